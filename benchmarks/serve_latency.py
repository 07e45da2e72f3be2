"""Latency of ``cl serve``'s page, measured in headless Chromium: submit of a text query -> results drawn.

    python benchmarks/serve_latency.py                                  # the newest runs/clip-emoji-* run
    python benchmarks/serve_latency.py --run runs/clip-emoji-20261203-031707 --queries 50 --screenshot shot.png

Builds the corpus once (cached in ``--work``, default ``<cl cache>/bench/serve-latency/<run name>``): the run's
held-out emoji images (every ``heldout-<style>`` split of its ``datasets.emoji`` data: concepts never seen in
training), written as PNG files, then ``cl embed`` and ``cl index build`` (flat) over them, as a user would. Then it
serves the page over that index (uvicorn on 127.0.0.1, in-process) with the held-out class names as ``--labels``,
drives Debian's headless Chromium (selenium; ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``) to type
``--queries`` held-out class names one after another into the text box and submit each, after ``--warmup``
queries that are not counted.

Timings come from the page itself (``window.clLast``, ``performance.now()`` in the browser): ``drawn`` is submit ->
results in the DOM and painted (the issue's figure), ``thumbs`` submit -> every thumbnail loaded (thumbnails seen
before come from the browser's cache, as they would for a user), ``server`` the server's own time for the request.
Prints p50 / p95 / max of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def newest_emoji_run() -> Path:
    runs = sorted(p for p in (REPO / "runs").glob("clip-emoji-*") if (p / "model.safetensors").is_file())
    if not runs:
        sys.exit("no trained runs/clip-emoji-* run: train one (bash scripts/main.sh) or pass --run")
    return runs[-1]


def heldout_corpus(run: Path, folder: Path) -> list[str]:
    """Write the run's held-out emoji images to ``folder/<style>/NNNN-<name>.png`` (once) and return the held-out
    class names (the same for every style)."""
    from cl_core.plugins import default_host
    from cl_core.spec import load_spec

    spec = load_spec(run / "spec.toml", default_host().registry())
    if spec.data is None or spec.data.type != "datasets.emoji":
        sys.exit(f"{run}: its data is {spec.data.type if spec.data else 'none'}, not datasets.emoji")
    from cl_datasets.emoji import build_emoji

    dataset = build_emoji(spec.data.params)
    names: list[str] = []
    for split, source in dataset.splits().items():
        if not split.startswith("heldout-"):
            continue
        names = list(source.class_names)
        out = folder / split.removeprefix("heldout-")
        if out.is_dir() and len(list(out.glob("*.png"))) == len(source):
            continue
        out.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(source), 64):
            rows = source.get(list(range(start, min(start + 64, len(source)))))
            for i, (image, text) in enumerate(zip(rows["image"], rows["text"]), start):
                slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "emoji"
                image.save(out / f"{i:04d}-{slug}.png")
    if not names:
        sys.exit(f"{run}: its data has no held-out split")
    return names


def cl(*args: object) -> None:
    command = [sys.executable, "-m", "cl_core", *map(str, args)]
    print("$ cl " + " ".join(map(str, args)), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def chromium_driver():
    """Debian's headless Chromium at 1000 x 800, device scale 1 (as tests/test_serve.py drives it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
                 "--force-device-scale-factor=1", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(driver, script: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.005).until(lambda d: d.execute_script(script))


def seq(driver) -> int:
    return int(driver.execute_script("return window.clLast ? window.clLast.seq : 0"))


def finished(driver, before: int) -> dict:
    """The page's ``window.clLast`` once the query after ``before`` is drawn and its thumbnails are loaded."""
    wait_for(driver, f"return window.clLast && window.clLast.seq > {before} && "
                     "(window.clLast.ok === false || window.clLast.thumbsMs !== null) && !document.body.dataset.busy")
    return driver.execute_script("return window.clLast")


def percentiles(values: list[float]) -> str:
    a = np.asarray(values)
    return f"p50 {np.percentile(a, 50):7.1f}   p95 {np.percentile(a, 95):7.1f}   max {a.max():7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a CLIP emoji run (default: the newest runs/clip-emoji-*)")
    parser.add_argument("--work", type=Path, help="corpus, embeddings and index (default: in the cl cache)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--k", type=int, default=12, help="results per query (the page's default)")
    parser.add_argument("--decoder", action="append", default=[], help="a decoder run, as cl serve --decoder")
    parser.add_argument("--screenshot", type=Path, help="save the page after the last query as this PNG")
    args = parser.parse_args()

    import torch

    from cl_core.cache import cache_dir
    from cl_core.search import Searcher
    from cl_core.serve import BackgroundServer, create_app

    run = (args.run or newest_emoji_run()).resolve()
    work = args.work or cache_dir("bench", "serve-latency", run.name)
    names = heldout_corpus(run, work / "images")
    t0 = time.perf_counter()
    cl("embed", run, "--data", work / "images", "--out", work / "emb", "--batch-size", 32)
    cl("index", "build", work / "emb", "--out", work / "index")
    print(f"corpus ready in {time.perf_counter() - t0:.1f} s", flush=True)

    searcher = Searcher.open(run, work / "index")
    app = create_app(searcher, zero_shot_labels=names, decoder_runs=args.decoder)
    queries = [names[i] for i in np.random.default_rng(0).permutation(len(names))[: args.queries + args.warmup]]

    from selenium.webdriver.common.by import By

    drawn, thumbs, server_ms = [], [], []
    with BackgroundServer(app) as server:
        driver = chromium_driver()
        try:
            driver.get(server.url + "/")
            wait_for(driver, "return document.body.dataset.ready === '1'")
            driver.find_element(By.ID, "k").clear()
            driver.find_element(By.ID, "k").send_keys(str(args.k))
            box = driver.find_element(By.ID, "q")
            for n, text in enumerate(queries):
                box.clear()
                box.send_keys(text)
                before = seq(driver)
                driver.find_element(By.ID, "search").click()
                last = finished(driver, before)
                if not last["ok"]:
                    sys.exit(f"query {text!r} failed: {last}")
                if n >= args.warmup:
                    drawn.append(last["drawnMs"])
                    thumbs.append(last["thumbsMs"])
                    server_ms.append(last["serverMs"])
            if args.screenshot:  # an image query: a held-out image, its labels (and caption, with --decoder)
                before = seq(driver)
                driver.find_element(By.ID, "file").send_keys(str(sorted((work / "images").rglob("*.png"))[0]))
                finished(driver, before)
                driver.execute_script("document.getElementById('status').style.visibility = 'hidden'")
                args.screenshot.write_bytes(driver.get_screenshot_as_png())
        finally:
            driver.quit()

    print(f"\n{run.name}: {len(searcher.index)} held-out images indexed ({searcher.index.kind}, "
          f"{searcher.index.dim}-d); {len(drawn)} text queries of held-out class names, k = {args.k}, "
          f"after {args.warmup} warm-up queries")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"  submit -> results drawn     {percentiles(drawn)}  ms")
    print(f"  submit -> thumbnails loaded {percentiles(thumbs)}  ms")
    print(f"  server time per request     {percentiles(server_ms)}  ms")


if __name__ == "__main__":
    main()

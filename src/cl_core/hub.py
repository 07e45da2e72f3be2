"""The Hugging Face Hub: repository references, uploads and downloads, with errors a user can act on.

Settings are read from the environment when a function is called, not when ``huggingface_hub`` is
imported: ``HF_ENDPOINT`` (another Hub, e.g. a mirror or a test server), ``HF_HUB_OFFLINE`` (use the
cache only), ``HF_HUB_CACHE`` / ``HF_HOME`` (the download cache) and ``HF_TOKEN``. Every network failure
becomes a :class:`~cl_core.errors.HubError` whose message names the repository, the endpoint and what to
do; the CLI prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from attrs import frozen

from .errors import HubError

DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = ("1", "true", "yes", "on")


@frozen
class RepoRef:
    """A Hub repository and an optional revision (branch, tag or commit id), written ``org/name@revision``.

    Attributes:
        repo_id: ``org/name``.
        revision: branch, tag or commit id; None means the default branch (``main``).
    """

    repo_id: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> RepoRef:
        """Parse ``org/name`` or ``org/name@revision``; raises :class:`HubError` on anything else."""
        repo_id, sep, revision = str(text).partition("@")
        if not REPO_ID_RE.match(repo_id) or (sep and not revision):
            raise HubError(f"{text!r} is not a Hub repository id: expected 'org/name' or 'org/name@revision'")
        return cls(repo_id, revision or None)

    @staticmethod
    def looks_like(text: str) -> bool:
        """Whether ``text`` has the shape ``org/name[@revision]``."""
        return bool(REPO_ID_RE.match(str(text).partition("@")[0]))

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def endpoint(explicit: str | None = None) -> str:
    """The Hub URL: ``explicit``, else ``HF_ENDPOINT``, else https://huggingface.co."""
    return (explicit or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not at import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The download cache: ``explicit``, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ~/.cache/huggingface/hub."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_network(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "NetworkError", "ConnectError"}) or isinstance(
        exc, (ConnectionError, TimeoutError))


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "server_message", None)
    if message:
        return str(message).strip()
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def explain(exc: BaseException, *, action: str, ref: RepoRef, url: str) -> str:
    """One message for a failed Hub call: what failed, why, and what to do."""
    from huggingface_hub import errors as hf

    what = f"cannot {action} {ref} ({url})"
    chain = list(_chain(exc))
    if any(isinstance(e, hf.OfflineModeIsEnabled) for e in chain) or (
        isinstance(exc, hf.LocalEntryNotFoundError) and offline()
    ):
        return (f"{what}: offline mode is on (HF_HUB_OFFLINE=1) and it is not in the cache; unset HF_HUB_OFFLINE "
                "to use the network, or load a local folder")
    if isinstance(exc, hf.RevisionNotFoundError):
        return f"{what}: revision {ref.revision or 'main'!r} does not exist in {ref.repo_id}"
    if isinstance(exc, hf.RepositoryNotFoundError):
        return (f"{what}: repository {ref.repo_id} not found (or it is private and you are not logged in: set "
                "HF_TOKEN, pass --token, or run `hf auth login`)")
    if isinstance(exc, hf.LocalTokenNotFoundError):
        return f"{what}: no Hugging Face token; set HF_TOKEN, pass --token, or run `hf auth login`"
    status = _status(exc)
    if status in (401, 403):
        return (f"{what}: the Hub refused the credentials (HTTP {status}: {_server_message(exc)}); use a token "
                "with write access: set HF_TOKEN, pass --token, or run `hf auth login`")
    if status is not None:
        return f"{what}: the Hub answered HTTP {status}: {_server_message(exc)}"
    network = next((e for e in chain if _is_network(e)), None)
    if network is not None or isinstance(exc, hf.LocalEntryNotFoundError):
        reason = f"{type(network).__name__}: {network}" if network is not None else "no connection"
        return f"{what}: the Hub cannot be reached ({reason}); {_unreachable_remedy(action)}"
    return f"{what}: {type(exc).__name__}: {_server_message(exc)}"


def _unreachable_remedy(action: str) -> str:
    """What to do when the Hub cannot be reached: only a download can fall back on the cache (offline mode);
    a push or a listing needs the Hub itself."""
    check = "check the network connection and HF_ENDPOINT"
    if action == "download":
        return f"{check}, or set HF_HUB_OFFLINE=1 to use the cache"
    if action == "push to":
        return f"{check}, then push again (a push needs the Hub itself; HF_HUB_OFFLINE cannot help)"
    return check


@contextlib.contextmanager
def errors(action: str, ref: RepoRef, url: str) -> Iterator[None]:
    """Turn any ``huggingface_hub`` or network failure inside the block into a :class:`HubError`."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        from huggingface_hub import errors as hf

        if isinstance(exc, (hf.HfHubHTTPError, hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled,
                            hf.LocalTokenNotFoundError, ValueError, OSError)) or _is_network(exc) or any(
                _is_network(e) for e in _chain(exc)):
            raise HubError(explain(exc, action=action, ref=ref, url=url)) from exc
        raise


@frozen
class Pushed:
    """The result of :func:`upload`.

    Attributes:
        url: the commit's web address.
        commit: the commit id.
        ref: where it went.
    """

    url: str
    commit: str
    ref: RepoRef


def upload(files: Mapping[str, bytes | Path], ref: RepoRef, *, private: bool = False, token: str | None = None,
           endpoint_url: str | None = None, message: str = "Upload with cl") -> Pushed:
    """Create the repository (and branch ``ref.revision``) if needed, then commit ``files`` in one commit.

    Args:
        files: path in the repository -> content (bytes or a local file).
        ref: repository and branch (None: ``main``). A missing branch is created from ``main``.
        private: create the repository private (an existing repository keeps its visibility).
        token: a Hub token with write access (default: ``HF_TOKEN`` or the saved login).
        endpoint_url: the Hub (default: :func:`endpoint`).
        message: the commit message.

    Raises:
        HubError: offline mode, network failure, refused credentials, or any other Hub error.
    """
    url = endpoint(endpoint_url)
    if offline():
        raise HubError(f"cannot push to {ref} ({url}): offline mode is on (HF_HUB_OFFLINE=1); unset it to push")
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=url, token=token, library_name="cl")
    with errors("push to", ref, url):
        api.create_repo(ref.repo_id, private=private, exist_ok=True, repo_type="model")
        if ref.revision and ref.revision != "main":
            api.create_branch(ref.repo_id, branch=ref.revision, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes)
                                         else str(content)) for path, content in sorted(files.items())]
        info = api.create_commit(ref.repo_id, operations=operations, commit_message=message,
                                 revision=ref.revision)
    return Pushed(url=str(info.commit_url), commit=str(info.oid), ref=ref)


def download(ref: RepoRef, *, token: str | None = None, endpoint_url: str | None = None,
             cache: str | Path | None = None, local_dir: str | Path | None = None,
             allow_patterns: Sequence[str] | None = None) -> Path:
    """Download a snapshot of ``ref`` into the cache (or ``local_dir``) and return its folder.

    In offline mode (``HF_HUB_OFFLINE=1``) only the cache is used.

    Raises:
        HubError: not cached in offline mode, network failure, unknown repository or revision, refused
            credentials.
    """
    url = endpoint(endpoint_url)
    from huggingface_hub import snapshot_download

    with errors("download", ref, url):
        folder = snapshot_download(
            ref.repo_id, revision=ref.revision, endpoint=url, token=token, cache_dir=str(cache_dir(cache)),
            local_dir=None if local_dir is None else str(local_dir), local_files_only=offline(),
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
        )
    return Path(folder)


def list_files(ref: RepoRef, *, token: str | None = None, endpoint_url: str | None = None) -> list[str]:
    """Paths of the files of ``ref`` on the Hub. Raises :class:`HubError`."""
    url = endpoint(endpoint_url)
    from huggingface_hub import HfApi

    with errors("list the files of", ref, url):
        return list(HfApi(endpoint=url, token=token).list_repo_files(ref.repo_id, revision=ref.revision))

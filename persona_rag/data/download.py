"""Fetch the official LaMP files (for users who are online)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

from persona_rag.errors import ConfigError, DownloadError
from persona_rag.io import atomic_write_bytes
from persona_rag.tasks import get_task

__all__ = ["LAMP_BASE_URL", "download_lamp", "lamp_urls"]

LAMP_BASE_URL = "https://ciir.cs.umass.edu/downloads/LaMP"
# Directory of each task on the LaMP site; LaMP-2 is the movie-tagging release, LaMP-2N the
# earlier news categorization.
_TASK_DIRS = {
    "LaMP-1": "LaMP_1",
    "LaMP-2": "LaMP_2/new",
    "LaMP-2N": "LaMP_2/old",
    "LaMP-3": "LaMP_3",
    "LaMP-4": "LaMP_4",
    "LaMP-5": "LaMP_5",
    "LaMP-6": "LaMP_6",
    "LaMP-7": "LaMP_7",
}


def lamp_urls(
    task: str, split: str, *, setting: str = "time", base_url: str = LAMP_BASE_URL
) -> dict[str, str]:
    """File name -> URL of one split.

    ``setting`` is ``time`` (the time-based split, the default: the paper's Table 3 uses it, and
    its question files carry the ``user_id`` a profile store needs) or ``user`` (user-based).
    """
    spec = get_task(task)
    if spec.name not in _TASK_DIRS:
        raise DownloadError(f"task {spec.name} is not an official LaMP task; nothing to download")
    if spec.name == "LaMP-6":
        raise DownloadError("LaMP-6 (Avocado emails) is not public; request it from the LaMP authors")
    if setting not in ("user", "time"):
        raise ConfigError(f"setting must be 'user' or 'time', got {setting!r}")
    prefix = f"{base_url.rstrip('/')}/{'time/' if setting == 'time' else ''}{_TASK_DIRS[spec.name]}/{split}"
    names = [f"{split}_questions.json"] + ([] if split == "test" else [f"{split}_outputs.json"])
    return {name: f"{prefix}/{name}" for name in names}


def download_lamp(
    task: str,
    split: str,
    dest: str | Path,
    *,
    setting: str = "time",
    base_url: str = LAMP_BASE_URL,
    timeout: float = 15.0,
) -> Path:
    """Download one split of a LaMP task into ``dest``; files already there are kept.

    ``setting`` as in :func:`lamp_urls`: the time-based split unless ``setting="user"``. Keep the
    two settings in different directories: their files have the same names.

    Each file is written atomically, so an interrupted download leaves no partial file and a
    second call resumes with the missing ones.

    Raises:
        DownloadError: at once when the site cannot be reached (offline machines), naming the URL.
    """
    dest = Path(dest)
    for name, url in lamp_urls(task, split, setting=setting, base_url=base_url).items():
        target = dest / name
        if target.exists():
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(
                f"cannot reach {url} ({reason}). This machine looks offline: fetch the LaMP files elsewhere "
                f"and put them in {dest}"
            ) from None
        except http.client.HTTPException as error:  # e.g. IncompleteRead: the connection dropped mid-file
            raise DownloadError(f"{url}: partial transfer ({error!r}); file not written, run again") from None
        atomic_write_bytes(target, data)
    return dest

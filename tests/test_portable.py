"""State files that move with their folder: paths inside the run are relative to the file."""

from __future__ import annotations

import json
import shutil

import pytest

from persona_rag.errors import DataError
from persona_rag.portable import read_portable_json, write_portable_json


def test_paths_inside_the_run_move_with_it_and_others_stay(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "models" / "reader"
    for folder in (run / "rspg" / "best", run / "ropg-kd" / "best", elsewhere):
        folder.mkdir(parents=True)
    state = {
        "model": str(run / "rspg" / "best"),
        "pool": [{"encoder": str(run / "ropg-kd" / "best")}, {"retriever": "bm25"}],
        "reader": str(elsewhere),
        "encoder": "sentence-transformers/all-MiniLM-L6-v2",  # a name, not a folder here
    }
    write_portable_json(run / "rspg" / "selector.json", state, root=run)
    written = json.loads((run / "rspg" / "selector.json").read_text())
    assert written["model"] == "./best" and written["pool"][0]["encoder"] == "../ropg-kd/best"
    assert written["reader"] == str(elsewhere) and written["pool"][1] == {"retriever": "bm25"}
    assert written["encoder"] == state["encoder"]

    moved = shutil.move(run, tmp_path / "copied-elsewhere")
    read = read_portable_json(tmp_path / "copied-elsewhere" / "rspg" / "selector.json")
    assert read["model"] == str(moved / "rspg" / "best")
    assert read["pool"][0]["encoder"] == str(moved / "ropg-kd" / "best")
    assert read["reader"] == str(elsewhere) and read["encoder"] == state["encoder"]


def test_an_older_state_with_absolute_paths_reads_unchanged(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"model": "/abs/best", "mode": "post"}))
    assert read_portable_json(tmp_path / "s.json") == {"model": "/abs/best", "mode": "post"}


@pytest.mark.parametrize("content", [None, "{not json"])
def test_a_missing_or_broken_file_names_itself(tmp_path, content):
    path = tmp_path / "selector.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=r"selector\.json: not a readable JSON state file"):
        read_portable_json(path)

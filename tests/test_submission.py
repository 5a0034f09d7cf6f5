"""Reading a submission defensively and rebuilding it on the release notebook: variants of the
real batchnorm release, made by editing its JSON the way students do."""
import builtins
import copy
import json
from pathlib import Path

import nbformat
import pytest
from nbformat import v3

from autograder import records
from autograder.submission import (
    MAX_CELLS,
    MAX_SOURCE_BYTES,
    Rejected,
    prepare,
    read_notebook,
    restore,
    to_notebook,
)

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "exercises" / "release" / "batchnorm" / "batchnorm.ipynb"
RELEASE = json.loads(TEMPLATE.read_text(encoding="utf-8"))

SETUP = "batchnorm_setup"
FORWARD = "batchnorm_batchnorm_forward_answer"
BACKWARD = "batchnorm_batchnorm_backward_answer"
TORCH_2D = "batchnorm_batchnorm_forward_torch_2d"
TORCH_4D = "batchnorm_batchnorm_forward_torch_4d"
WRITTEN = "batchnorm_experiment_sigmoid_depth"


def release() -> dict:
    return copy.deepcopy(RELEASE)


def at(nb: dict, grade_id: str) -> int:
    """Index of the cell with ``grade_id`` in a notebook dict."""
    return next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def planned(prepared, grade_id):
    [cell] = [c for c in prepared.cells if c.grade_id == grade_id]
    return cell


def text(source) -> str:
    return source if isinstance(source, str) else "".join(source)


def rebuilt(nb: dict):
    return restore(nb, RELEASE, "batchnorm")


def total_points(notebook) -> float:
    return sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in notebook.cells)


def write(tmp_path: Path, nb: dict) -> Path:
    path = tmp_path / "batchnorm.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def rejected(path: Path, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as caught:
        read_notebook(path, **kwargs)
    return caught.value


# --- rebuilding -------------------------------------------------------------------------------


def test_untouched_release_is_rebuilt_as_is():
    prepared = prepare(TEMPLATE, TEMPLATE, "batchnorm")
    assert prepared.notes == []
    assert [c.source for c in prepared.cells] == [text(c["source"]) for c in RELEASE["cells"]]
    for cell, original in zip(prepared.cells, RELEASE["cells"]):
        assert cell.metadata == (original["metadata"] if "nbgrader" in original["metadata"] else {})
    assert prepared.metadata == RELEASE["metadata"]
    assert prepared.nbformat_minor == RELEASE["nbformat_minor"]
    tests = [(i, c["metadata"]["nbgrader"]["grade_id"]) for i, c in enumerate(RELEASE["cells"])
             if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"]
    assert prepared.test_cells() == tests and len(tests) == 11
    assert {prepared.cells[i].kind for i, _ in tests} == {"test"}
    assert prepared.cells[at(RELEASE, SETUP)].kind == "code"
    assert prepared.cells[at(RELEASE, FORWARD)].kind == "code"


def test_answers_are_kept_under_the_release_metadata():
    nb = release()
    answer = ["def batchnorm_forward(x, gamma, beta, eps=1e-5):\n", "    return x, {}\n"]
    nb["cells"][at(nb, FORWARD)]["source"] = answer
    nb["cells"][at(nb, FORWARD)]["metadata"]["nbgrader"]["checksum"] = "student-side"
    nb["cells"][at(nb, WRITTEN)]["source"] = "The gradients vanish without normalization."
    prepared = rebuilt(nb)
    forward = planned(prepared, FORWARD)
    assert forward.source == "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x, {}\n"
    assert forward.metadata == RELEASE["cells"][at(RELEASE, FORWARD)]["metadata"]
    written = planned(prepared, WRITTEN)
    assert (written.kind, written.source) == ("markdown", "The gradients vanish without normalization.")
    assert any(FORWARD in n and "metadata" in n for n in prepared.notes)


def test_edited_test_cell_is_restored():
    nb = release()
    nb["cells"][at(nb, TORCH_2D)]["source"] = "print('all tests passed')"
    prepared = rebuilt(nb)
    assert planned(prepared, TORCH_2D).source == text(RELEASE["cells"][at(RELEASE, TORCH_2D)]["source"])
    assert prepared.notes == [f"The test cell {TORCH_2D} had been changed; it was restored from the release."]


def test_test_cell_turned_into_markdown_is_restored_as_a_test():
    nb = release()
    nb["cells"][at(nb, TORCH_2D)]["cell_type"] = "markdown"
    del nb["cells"][at(nb, TORCH_2D)]["outputs"], nb["cells"][at(nb, TORCH_2D)]["execution_count"]
    prepared = rebuilt(nb)
    cell = planned(prepared, TORCH_2D)
    assert (cell.kind, cell.cell_type) == ("test", "code")
    assert (at(RELEASE, TORCH_2D), TORCH_2D) in prepared.test_cells()
    assert any(TORCH_2D in n and "markdown" in n for n in prepared.notes)


def test_deleted_test_cell_is_put_back_in_its_place():
    nb = release()
    del nb["cells"][at(nb, TORCH_4D)]
    prepared = rebuilt(nb)
    assert [c.grade_id for c in prepared.cells] == [
        c["metadata"].get("nbgrader", {}).get("grade_id") for c in RELEASE["cells"]
    ]
    assert prepared.notes == [f"The test cell {TORCH_4D} was missing; it was restored from the release."]


def test_duplicated_test_cell_counts_once():
    nb = release()
    nb["cells"].append(copy.deepcopy(nb["cells"][at(nb, TORCH_2D)]))
    prepared = rebuilt(nb)
    assert [g for _, g in prepared.test_cells()].count(TORCH_2D) == 1
    assert len(prepared.cells) == len(RELEASE["cells"])
    assert any(TORCH_2D in n and "copy was ignored" in n for n in prepared.notes)
    assert total_points(to_notebook(prepared)) == total_points(nbformat.from_dict(RELEASE))


def test_edited_grading_metadata_is_replaced():
    nb = release()
    meta = nb["cells"][at(nb, TORCH_2D)]["metadata"]["nbgrader"]
    meta.update(schema_version=1, points=1000, checksum="0" * 32)
    nb["cells"][at(nb, SETUP)]["metadata"]["nbgrader"]["locked"] = False
    prepared = rebuilt(nb)
    assert planned(prepared, TORCH_2D).metadata == RELEASE["cells"][at(RELEASE, TORCH_2D)]["metadata"]
    assert planned(prepared, SETUP).metadata == RELEASE["cells"][at(RELEASE, SETUP)]["metadata"]
    assert total_points(to_notebook(prepared)) == total_points(nbformat.from_dict(RELEASE)) == 100
    assert any(SETUP in n and "read-only" in n for n in prepared.notes)


def test_forged_grade_cell_earns_nothing():
    nb = release()
    forged = copy.deepcopy(nb["cells"][at(nb, TORCH_2D)])
    forged["metadata"]["nbgrader"].update(grade_id="bonus", points=1000)
    forged["source"] = "print('bonus')"
    nb["cells"].append(forged)
    prepared = rebuilt(nb)
    last = prepared.cells[-1]
    assert (last.kind, last.grade_id, last.metadata, last.source) == ("code", None, {}, "print('bonus')")
    assert all(g != "bonus" for _, g in prepared.test_cells())
    assert total_points(to_notebook(prepared)) == 100
    assert any("bonus" in n and "no points" in n for n in prepared.notes)


def test_deleted_answer_cell_gets_the_stub_back():
    nb = release()
    del nb["cells"][at(nb, BACKWARD)]
    prepared = rebuilt(nb)
    # right after the last graded cell above it in the release (the last forward test)
    order = [c.grade_id for c in prepared.cells]
    assert order.index(BACKWARD) == order.index("batchnorm_batchnorm_forward_cache") + 1
    assert "NotImplementedError" in planned(prepared, BACKWARD).source
    [note] = prepared.notes
    assert BACKWARD in note and "probably lost" in note


def test_deleted_written_answer_is_reported_missing():
    nb = release()
    del nb["cells"][at(nb, WRITTEN)]
    prepared = rebuilt(nb)
    assert planned(prepared, WRITTEN).kind == "markdown"
    assert any(WRITTEN in n and "written answer" in n and "missing" in n for n in prepared.notes)


def test_duplicated_answer_cell_still_runs_as_a_free_cell():
    nb = release()
    copy_of_answer = copy.deepcopy(nb["cells"][at(nb, FORWARD)])
    copy_of_answer["source"] = "def helper():\n    return 1\n"
    nb["cells"].insert(at(nb, FORWARD) + 1, copy_of_answer)
    prepared = rebuilt(nb)
    extra = prepared.cells[at(RELEASE, FORWARD) + 1]
    assert (extra.kind, extra.grade_id, extra.metadata) == ("code", None, {})
    assert extra.source == "def helper():\n    return 1\n"
    assert planned(prepared, FORWARD).metadata["nbgrader"]["solution"] is True
    assert any(FORWARD in n and "more than once" in n for n in prepared.notes)


def test_reordered_cells_keep_the_students_order():
    nb = release()
    test_cell = nb["cells"].pop(at(nb, TORCH_2D))
    nb["cells"].insert(at(nb, FORWARD), test_cell)  # above the function it tests
    prepared = rebuilt(nb)
    order = [c.grade_id for c in prepared.cells]
    assert order.index(TORCH_2D) == order.index(FORWARD) - 1
    assert (order.index(TORCH_2D), TORCH_2D) in prepared.test_cells()
    assert len(prepared.cells) == len(RELEASE["cells"])
    [note] = prepared.notes
    assert TORCH_2D in note and "order" in note


def test_added_free_cells_are_kept_without_metadata():
    nb = release()
    nb["cells"].insert(3, {"cell_type": "code", "metadata": {"tags": ["mine"]}, "outputs": [], "execution_count": 3,
                           "source": ["x = 1\n", "print(x)"]})
    nb["cells"].append({"cell_type": "raw", "metadata": {}, "source": "notes to self"})
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "![plot](attachment:p.png)",
                        "attachments": {"p.png": {"image/png": "iVBORw0KGgo="}}})
    prepared = rebuilt(nb)
    added = prepared.cells[3]
    assert (added.kind, added.source, added.metadata, added.grade_id) == ("code", "x = 1\nprint(x)", {}, None)
    assert (prepared.cells[-2].kind, prepared.cells[-2].source) == ("raw", "notes to self")
    assert prepared.cells[-1].attachments == {"p.png": {"image/png": "iVBORw0KGgo="}}
    assert prepared.notes == []
    nbformat.validate(to_notebook(prepared))


def test_a_notebook_of_another_exercise_is_noticed():
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "metadata": {}, "source": "1", "outputs": [], "execution_count": None}]}
    prepared = rebuilt(nb)
    assert prepared.notes[0].startswith("None of the graded cells of batchnorm were found")
    assert len(prepared.test_cells()) == 11


def test_restore_leaves_its_input_alone():
    nb = release()
    del nb["cells"][at(nb, TORCH_4D)]
    before = copy.deepcopy(nb)
    rebuilt(nb)
    assert nb == before


def test_too_many_cells_are_rejected():
    nb = release()
    nb["cells"] += [{"cell_type": "markdown", "metadata": {}, "source": ""}] * MAX_CELLS
    with pytest.raises(Rejected) as caught:
        rebuilt(nb)
    assert caught.value.status == records.TOO_LARGE
    assert f"{len(nb['cells']):,} cells" in caught.value.message


def test_too_much_source_text_is_rejected():
    nb = release()
    nb["cells"][at(nb, FORWARD)]["source"] = "#" * (MAX_SOURCE_BYTES + 1)
    with pytest.raises(Rejected) as caught:
        rebuilt(nb)
    assert caught.value.status == records.TOO_LARGE and "the limit is 2 MB" in caught.value.message


def test_to_notebook_is_a_valid_notebook_with_outputs():
    nb = release()
    del nb["cells"][at(nb, TORCH_4D)]
    nb["cells"][at(nb, TORCH_2D)]["outputs"] = [{"output_type": "weird"}]  # dropped, never validated
    prepared = rebuilt(nb)
    index, _ = prepared.test_cells()[0]
    stream = nbformat.v4.new_output("stream", name="stdout", text="passed\n")
    notebook = to_notebook(prepared, {index: [stream], at(RELEASE, SETUP): []})
    nbformat.validate(notebook)
    assert notebook.cells[index].outputs == [stream]
    assert all(c.outputs == [] and c.execution_count is None for i, c in enumerate(notebook.cells)
               if c.cell_type == "code" and i != index)
    assert [c.metadata for c in notebook.cells] == [c.metadata for c in prepared.cells]
    assert notebook.metadata == RELEASE["metadata"]
    assert len({c.id for c in notebook.cells}) == len(notebook.cells)


# --- format versions ----------------------------------------------------------------------------


def as_v3(nb: dict, edit_test: str) -> str:
    """The release in the old worksheet format, with one test cell edited and a heading cell."""
    cells = [v3.new_heading_cell("Batch normalization", level=1)]
    for cell in nb["cells"]:
        source, meta = text(cell["source"]), cell["metadata"]
        if meta.get("nbgrader", {}).get("grade_id") == edit_test:
            source = "pass"
        if cell["cell_type"] == "code":
            cells.append(v3.new_code_cell(input=source, metadata=meta, prompt_number=1,
                                          outputs=[v3.new_output("stream", output_text="hi")]))
        else:
            cells.append(v3.new_text_cell(cell["cell_type"], source=source, metadata=meta))
    return v3.writes_json(v3.new_notebook(worksheets=[v3.new_worksheet(cells=cells)], metadata=nb["metadata"]))


def test_format_3_is_converted_and_restored(tmp_path):
    path = tmp_path / "batchnorm.ipynb"
    path.write_text(as_v3(RELEASE, edit_test=TORCH_2D), encoding="utf-8")
    assert json.loads(path.read_text())["nbformat"] == 3
    prepared = prepare(path, TEMPLATE, "batchnorm")
    assert prepared.notes == [
        "The notebook was in the old format version 3; it was converted to version 4.",
        f"The test cell {TORCH_2D} had been changed; it was restored from the release.",
    ]
    assert prepared.cells[0].source == "# Batch normalization"
    assert [c.grade_id for c in prepared.cells[1:]] == [
        c["metadata"].get("nbgrader", {}).get("grade_id") for c in RELEASE["cells"]
    ]
    assert len(prepared.test_cells()) == 11
    nbformat.validate(to_notebook(prepared))


@pytest.mark.parametrize("version", [2, 5])
def test_other_format_versions_are_rejected(tmp_path, version):
    nb = release()
    nb["nbformat"] = version
    error = rejected(write(tmp_path, nb))
    assert error.status == records.INVALID
    assert f"format version {version}" in error.message


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b" \n"])
def test_empty_file_is_rejected(tmp_path, content):
    path = tmp_path / "batchnorm.ipynb"
    path.write_bytes(content)
    error = rejected(path)
    assert error.status == records.INVALID and "empty" in error.message


def test_bytes_that_are_not_utf8_are_located(tmp_path):
    path = tmp_path / "batchnorm.ipynb"
    path.write_bytes(b'{\n  "cells": [],\n  "x": "caf\xe9"\n}')
    error = rejected(path)
    assert error.status == records.INVALID
    assert "byte 0xe9 at line 3, column 12" in error.message and "File > Download" in error.message


def test_a_byte_order_mark_is_tolerated(tmp_path):
    path = tmp_path / "batchnorm.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + TEMPLATE.read_bytes())
    assert len(read_notebook(path)["cells"]) == len(RELEASE["cells"])


def test_malformed_json_is_located(tmp_path):
    path = tmp_path / "batchnorm.ipynb"
    path.write_text('{\n  "nbformat": 4,\n  "cells": [\n', encoding="utf-8")
    error = rejected(path)
    assert error.status == records.INVALID
    assert "not valid JSON" in error.message and "line 4, column 1" in error.message


@pytest.mark.parametrize(
    ("nb", "words"),
    [
        ([1, 2], "not a notebook"),
        ({"cells": []}, "no notebook format version"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {"0": {}}}, "no list of cells"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ["x"]}, "Cell 1 is not a notebook cell"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "markdown", "metadata": {}, "source": "ok"},
                    {"cell_type": "code", "metadata": {}, "source": 42}]}, "Cell 2 has a source that is not text"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "metadata": {}, "source": ["a", None]}]}, "Cell 1 has a source"),
    ],
)
def test_json_that_is_not_a_usable_notebook_is_rejected(tmp_path, nb, words):
    error = rejected(write(tmp_path, nb))
    assert error.status == records.INVALID and words in error.message


def test_a_large_file_is_rejected_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "batchnorm.ipynb"
    with path.open("wb") as handle:
        handle.truncate(25 * 2**20)  # sparse: no 25 MB written

    def must_not_read(*args, **kwargs):
        raise AssertionError("the file was opened before its size was checked")

    monkeypatch.setattr(Path, "open", must_not_read)
    monkeypatch.setattr(Path, "read_bytes", must_not_read)
    monkeypatch.setattr(Path, "read_text", must_not_read)
    monkeypatch.setattr(builtins, "open", must_not_read)
    error = rejected(path)
    assert error.status == records.TOO_LARGE
    assert error.message.startswith("The notebook is 25.0 MB; the limit is 20 MB. Clear the outputs")


def test_the_size_cap_can_be_lowered(tmp_path):
    error = rejected(TEMPLATE, max_bytes=1000)
    assert error.status == records.TOO_LARGE and "the limit is" in error.message


def test_a_folder_is_not_a_notebook(tmp_path):
    assert rejected(tmp_path).status == records.INVALID


def test_rejected_only_takes_the_two_statuses():
    assert Rejected(records.TOO_LARGE, "x").status == records.TOO_LARGE
    with pytest.raises(ValueError):
        Rejected(records.GRADED, "x")

import json

import pytest

from arcsub.errors import DatasetNotFoundError, TaskFormatError
from arcsub.tasks import (
    DATASET_NAMES,
    Pair,
    Task,
    check_grid,
    load_tasks,
    smallest_tasks,
    tasks_to_challenges,
    tasks_to_solutions,
)


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


GOOD = {"train": [{"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}], "test": [{"input": [[5, 6], [7, 8]]}]}


def test_named_datasets_load_with_solutions():
    evaluation = load_tasks("arc1/evaluation")
    assert len(evaluation) == 400
    assert sum(len(t.test) for t in evaluation) == 419
    assert evaluation.has_solutions
    for name in DATASET_NAMES:
        assert len(load_tasks(f"{name}[:2]")) == 2


def test_selectors_slice_and_ids():
    everything = load_tasks("arc1/training").tasks
    assert [t.id for t in load_tasks("arc1/training[3:5]")] == [t.id for t in everything[3:5]]
    wanted = [everything[7].id, everything[1].id]
    assert [t.id for t in load_tasks(f"arc1/training[{wanted[0]}, {wanted[1]}]")] == wanted
    with pytest.raises(DatasetNotFoundError, match="no task with id nope"):
        load_tasks("arc1/training[nope]")
    with pytest.raises(DatasetNotFoundError, match="bad selector"):
        load_tasks("arc1/training[1:2:3]")


def test_unknown_source_lists_datasets():
    with pytest.raises(DatasetNotFoundError, match="arc1/evaluation"):
        load_tasks("arc9/whatever")


def test_kaggle_files_pick_up_sibling_solutions(tmp_path):
    tasks = load_tasks("arc1/evaluation[:3]").tasks
    write(tmp_path / "arc-agi_test_challenges.json", tasks_to_challenges(tasks))
    loaded = load_tasks(str(tmp_path / "arc-agi_test_challenges.json"))
    assert not loaded.has_solutions
    write(tmp_path / "arc-agi_test_solutions.json", tasks_to_solutions(tasks))
    loaded = load_tasks(str(tmp_path / "arc-agi_test_challenges.json"))
    assert loaded.has_solutions and loaded.tasks == tasks


def test_single_task_file_and_folder(tmp_path):
    write(tmp_path / "abc123.json", GOOD)
    write(tmp_path / "def456.json", GOOD)
    single = load_tasks(str(tmp_path / "abc123.json"))
    assert [t.id for t in single] == ["abc123"]
    assert single.tasks[0].test[0].output is None
    assert [t.id for t in load_tasks(str(tmp_path))] == ["abc123", "def456"]


@pytest.mark.parametrize(
    "grid, message",
    [
        ([[1, 2], [3]], "row 1: has 1 cells but row 0 has 2"),
        ([[1, 10]], "row 0 column 1: 10 is not a colour"),
        ([[1, True]], "row 0 column 1: True is not a colour"),
        ([[1, "2"]], "is not a colour"),
        ([], "has 0 rows"),
        ([[]], "row 0: has 0 cells"),
        ([[0] * 31], "31 cells"),
        ([[0]] * 31, "31 rows"),
        ("123", "expected a list of rows"),
    ],
)
def test_grid_errors_name_the_row(grid, message):
    with pytest.raises(TaskFormatError, match=message):
        check_grid(grid, "f.json: task t train[0].input")


def test_bad_tasks_are_all_reported_with_file_task_pair_and_row(tmp_path):
    bad = {
        "aaaa": GOOD,
        "bbbb": {"train": [GOOD["train"][0], {"input": [[1], [2, 3]], "output": [[1]]}], "test": GOOD["test"]},
        "cccc": {"train": [], "test": GOOD["test"]},
        "dddd": {"train": [{"input": [[1]]}], "test": GOOD["test"]},
    }
    path = write(tmp_path / "challenges.json", bad)
    with pytest.raises(TaskFormatError) as caught:
        load_tasks(str(path))
    text = str(caught.value)
    assert "3 invalid task(s)" in text and "`skip_invalid`" in text
    assert f"{path}: task bbbb train[1].input row 1: has 2 cells but row 0 has 1" in text
    assert "task cccc: has no train pairs" in text
    assert "task dddd train[0]: every train pair needs an 'output' grid" in text
    loaded = load_tasks(str(path), skip_invalid=True)
    assert [t.id for t in loaded] == ["aaaa"] and len(loaded.invalid) == 3


def test_solutions_must_match_test_inputs(tmp_path):
    path = write(tmp_path / "c.json", {"aaaa": GOOD})
    sol = write(tmp_path / "s.json", {"aaaa": [[[1]], [[2]]]})
    with pytest.raises(TaskFormatError, match="solutions has 2 grids for 1 test inputs"):
        load_tasks(str(path), solutions=str(sol))
    sol = write(tmp_path / "s.json", {"zzzz": [[[1]]]})
    with pytest.raises(TaskFormatError, match="no entry for task aaaa"):
        load_tasks(str(path), solutions=str(sol))


def test_invalid_json_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(TaskFormatError, match="broken.json: not valid JSON"):
        load_tasks(str(path))


def test_cells_count_every_known_grid():
    pair = Pair(((1, 2, 3), (4, 5, 6)), ((7,),))  # 6 + 1
    test = Pair(((0,) * 3,) * 3)  # 9, output unknown
    task = Task("t", (pair,), (test,))
    assert (pair.cells, test.cells, task.cells) == (7, 9, 16)
    solved = Task("t", (pair,), (Pair(test.input, ((1, 1), (1, 1))),))
    assert solved.cells == 20


def test_smallest_tasks_breaks_ties_by_id_and_keeps_source_order():
    def task(task_id, side):
        return Task(task_id, (Pair(((0,) * side,) * side, ((0,) * side,) * side),), (Pair(((0,),)),))

    # "b" and "a" have the same size; the tie goes to the smaller id, whatever the source order
    tasks = [task("c", 1), task("b", 2), task("z", 3), task("a", 2)]
    assert [t.id for t in smallest_tasks(tasks, 2)] == ["c", "a"]
    assert [t.id for t in smallest_tasks(list(reversed(tasks)), 2)] == ["a", "c"]
    assert [t.id for t in smallest_tasks(tasks, 3)] == ["c", "b", "a"]
    assert smallest_tasks(tasks, 0) == []

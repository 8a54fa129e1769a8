"""The run folder's loss log."""

from engine.train.runfiles import LossLog


def test_a_loss_log_resumed_with_another_column_keeps_one_header(tmp_path):
    path = tmp_path / "loss.csv"
    log = LossLog(path, resume_step=0)
    log.write(10, 0.5, 1e-3, 1.0)
    assert LossLog(path, resume_step=10).path == path and path.read_text().count("\n") == 2  # same columns: kept

    LossLog(path, resume_step=10, extra=("colour_loss",)).write(20, 0.4, 1e-3, 2.0, 0.25)
    lines = path.read_text().splitlines()
    assert lines[0] == "step,loss,lr,elapsed_s,colour_loss"
    assert lines[1].split(",")[0] == "10" and lines[1].endswith(",nan")
    assert lines[2] == "20,0.400000,1.000e-03,2.0,0.250000"

    LossLog(path, resume_step=20).write(30, 0.3, 1e-3, 3.0)  # and off again: the column goes
    assert [line.count(",") for line in path.read_text().splitlines()] == [3, 3, 3, 3]


def test_a_fresh_loss_log_starts_over(tmp_path):
    path = tmp_path / "loss.csv"
    path.write_text("step,loss,lr,elapsed_s\n10,0.5,0.001,1.0\n")
    LossLog(path, resume_step=0, extra=("colour_loss",))
    assert path.read_text() == "step,loss,lr,elapsed_s,colour_loss\n"


def test_a_resumed_loss_log_drops_the_rows_after_the_checkpoint(tmp_path):
    """Those steps are trained again; a row cut short when the run was stopped goes too."""
    path = tmp_path / "loss.csv"
    path.write_text("step,loss,lr,elapsed_s\n10,0.5,0.001,1.0\n20,0.4,0.001,2.0\n30,0.3,0.001,3.0\n4")
    LossLog(path, resume_step=20).write(30, 0.35, 1e-3, 3.5)
    assert path.read_text().splitlines() == [
        "step,loss,lr,elapsed_s", "10,0.5,0.001,1.0", "20,0.4,0.001,2.0", "30,0.350000,1.000e-03,3.5"]

"""Rich progress bars shared by the commands: per training epoch, and for long loops."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .common import console


class EpochProgress:
    """A rich progress bar per epoch showing the loss and images/s."""

    def __init__(self):
        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.1f} img/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def start(self, description: str, total: int):
        self.bar.start()
        return self.bar.add_task(description, total=total, loss=float("nan"), rate=0.0)

    def update(self, task, completed: int, loss: float, rate: float) -> None:
        self.bar.update(task, completed=completed, loss=loss, rate=rate)

    def finish(self, task) -> None:
        self.bar.stop()


def progress_bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )

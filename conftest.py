"""Pytest hooks shared by the unit tests and the notebooks run under nbval."""
from collections import defaultdict

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    """Adds up each notebook's time (setup, call, teardown); also sees the reports of pytest-xdist workers."""
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path.rsplit("/", 1)[-1]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook run times")
    for name, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{name:<40s} {seconds:7.1f} s")
    terminalreporter.write_line(f"{'total':<40s} {sum(_NOTEBOOK_SECONDS.values()):7.1f} s")

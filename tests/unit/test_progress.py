"""The progress lines every long step logs: count, rate and ETA, throttled, and always the last one."""

from fi_resources.stages import progress_reporter


def test_progress_lines_are_throttled_and_end_with_the_total() -> None:
    lines: list[str] = []
    report = progress_reporter(lines.append, "describing", every_s=3600)
    report(10, 100, 2.0)  # the first line comes at once
    report(20, 100, 4.0)  # within the interval: dropped
    report(100, 100, 20.0)  # the end: always
    assert lines == ["describing: 10/100 (5.0/s, ETA 18s)", "describing: 100/100 (5.0/s, ETA 0s)"]


def test_no_time_elapsed_is_no_rate_not_a_division_error() -> None:
    lines: list[str] = []
    progress_reporter(lines.append, "x")(0, 5, 0.0)
    assert lines == ["x: 0/5 (0.0/s, ETA 0s)"]

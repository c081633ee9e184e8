"""``tge report``: a run or sweep folder as report.md and a self-contained report.html."""

from tge_ray.report.build import ReportPaths, write_report

__all__ = ["ReportPaths", "write_report"]

"""The scanner: probes libraries, walks them, and publishes what changed."""

from eventsvc.scanner.scanner import Scanner, ScanReport

__all__ = ["ScanReport", "Scanner"]

"""Tests for eventsvc.core.dates: file-name dates and the date-taken waterfall."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventsvc.core.dates import SOURCES, date_from_filename, resolve_date_taken


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMG_20230102_123456.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("IMG_20230102_123456_123.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("PXL_20230102_123456789.jpg", datetime(2023, 1, 2, 12, 34, 56, 789000)),
        ("PXL_20230102_123456789.MP.jpg", datetime(2023, 1, 2, 12, 34, 56, 789000)),
        ("VID_20230102_123456.mp4", datetime(2023, 1, 2, 12, 34, 56)),
        ("IMG-20230102-WA0001.jpg", datetime(2023, 1, 2)),
        ("VID-20230102-WA0012.mp4", datetime(2023, 1, 2)),
        ("Screenshot_2023-01-02-12-34-56.png", datetime(2023, 1, 2, 12, 34, 56)),
        ("Screenshot_2023-01-02-12-34-56-789_com.app.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("Screenshot 2023-01-02 at 12.34.56.png", datetime(2023, 1, 2, 12, 34, 56)),
        ("Screenshot 2023-01-02 at 1.34.56 PM.png", datetime(2023, 1, 2, 13, 34, 56)),
        ("Screenshot 2023-01-02 at 12.04.05\u202fAM.png", datetime(2023, 1, 2, 0, 4, 5)),
        ("WhatsApp Image 2023-01-02 at 12.34.56.jpeg", datetime(2023, 1, 2, 12, 34, 56)),
        ("2023-01-02 12.34.56.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("20230102_123456.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("20230102_123456(1).jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("2023-01-02_12-34-56.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("signal-2023-01-02-123456.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("signal-2023-01-02-123456_001.jpeg", datetime(2023, 1, 2, 12, 34, 56)),
        ("/photos/2019-05-05 trip/IMG_20230102_123456.jpg", datetime(2023, 1, 2, 12, 34, 56)),
        ("C:\\Users\\me\\DCIM\\VID_20230102_123456.mp4", datetime(2023, 1, 2, 12, 34, 56)),
    ],
)
def test_recognised_names(name: str, expected: datetime) -> None:
    assert date_from_filename(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "IMG_1234.JPG",
        "DSC01234.jpg",
        "holiday.jpg",
        "",
        "IMG_20231302_123456.jpg",  # month 13
        "IMG_20230132_123456.jpg",  # day 32
        "IMG_20230229_123456.jpg",  # not a leap year
        "IMG_20230102_253456.jpg",  # hour 25
        "IMG_20230102_126056.jpg",  # minute 60
        "IMG_18991231_235959.jpg",  # year < 1900
        "IMG_21010101_000000.jpg",  # year > 2100
        "IMG-18000102-WA0001.jpg",
        "Screenshot_2023-13-02-12-34-56.png",
        "Screenshot 2023-01-02 at 13.34.56 PM.png",  # 13 PM
        "1234567890123456.jpg",
        "x20230102_1234567890.jpg",  # too many digits to be a time
        "2023-01-02.jpg",  # date without time is not a pattern we trust
        "/2023-01-02 12.34.56/holiday.jpg",  # directories are not looked at
    ],
)
def test_rejected_names(name: str) -> None:
    assert date_from_filename(name) is None


NS = 1_000_000_000
MAY_2021 = int(datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()) * NS


def waterfall(**overrides: object) -> tuple[str | None, str | None]:
    kwargs: dict[str, object] = {
        "exif_original": "2023-01-02T12:34:56.123",
        "exif_digitized": "2023-01-02T12:35:00",
        "container_created": "2023-01-02T10:34:56Z",
        "file_name": "IMG_20220101_000000.jpg",
        "fs_times": [MAY_2021 + 5 * NS, MAY_2021],
    }
    kwargs.update(overrides)
    return resolve_date_taken(**kwargs)  # type: ignore[arg-type]


def test_waterfall_order() -> None:
    assert SOURCES == (
        "exif_original", "exif_digitized", "xmp", "xmp_sidecar", "container", "filename",
        "filesystem",
    )  # fmt: skip
    assert waterfall() == ("2023-01-02T12:34:56.123", "exif_original")
    assert waterfall(exif_original=None) == ("2023-01-02T12:35:00", "exif_digitized")
    assert waterfall(exif_original=None, exif_digitized="") == (
        "2023-01-02T10:34:56Z",
        "container",
    )
    no_meta = {"exif_original": None, "exif_digitized": None, "container_created": None}
    assert waterfall(**no_meta) == ("2022-01-01T00:00:00", "filename")
    assert waterfall(**no_meta, file_name="holiday.jpg") == ("2021-05-06T07:08:09Z", "filesystem")
    assert waterfall(**no_meta, file_name=None, fs_times=[]) == (None, None)


def test_unusable_values_fall_through() -> None:
    assert waterfall(exif_original="garbage", exif_digitized="0000-00-00T00:00:00")[1] == (
        "container"
    )
    assert waterfall(exif_original="1850-01-01T00:00:00")[1] == "exif_digitized"


def test_filesystem_uses_earliest_positive_time() -> None:
    times = [MAY_2021 + 3600 * NS, 0, -5, MAY_2021 + 123_000_000, None]
    result = resolve_date_taken(
        exif_original=None,
        exif_digitized=None,
        container_created=None,
        file_name="x.jpg",
        fs_times=iter(times),
    )
    assert result == ("2021-05-06T07:08:09.123Z", "filesystem")

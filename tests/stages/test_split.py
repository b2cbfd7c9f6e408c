import datetime as dt

import polars as pl
import pytest

from stages.core.errors import PipelineError
from stages.core.stage_params import SplitParams
from stages.split import split_by_date

RANGES = SplitParams.model_validate(
    {
        "ranges": {
            "train": {"start": "2010-01-01", "end": "2016-12-31"},
            "valid": {"start": "2017-01-01", "end": "2018-12-31"},
            "test": {"start": "2019-01-01", "end": "2020-12-31"},
        }
    }
).ranges


def test_split_by_date_counts_rows_outside_every_range():
    frame = pl.DataFrame(
        {
            "id": list("abcd"),
            "date": [dt.date(2012, 5, 1), dt.date(2018, 12, 31), dt.date(2019, 1, 1), dt.date(2021, 6, 1)],
        }
    )
    parts, outside = split_by_date(frame, RANGES)
    assert {k: v["id"].to_list() for k, v in parts.items()} == {"train": ["a"], "valid": ["b"], "test": ["c"]}
    assert outside == 1


def test_empty_split_is_a_clear_error():
    frame = pl.DataFrame({"id": ["a"], "date": [dt.date(2012, 5, 1)]})
    with pytest.raises(PipelineError, match=r"split 'valid' \(2017-01-01..2018-12-31\) is empty"):
        split_by_date(frame, RANGES)


def test_overlapping_ranges_are_a_clear_error():
    overlapping = RANGES | {"valid": RANGES["valid"].model_copy(update={"start": dt.date(2016, 6, 1)})}
    frame = pl.DataFrame({"id": ["a"], "date": [dt.date(2016, 7, 1)]})
    with pytest.raises(PipelineError, match=r"split.ranges.valid overlaps another split"):
        split_by_date(frame, overlapping)

"""Readings as PostgreSQL binary COPY data, built with numpy instead of row by row.

The binary format is a header, then per row a field count and each field as a length and
big-endian bytes, then a trailer. With fixed-width fields every row has the same layout, so a
numpy structured array is the whole body; rows whose value is NULL (failed reads) use a second
layout with length -1 and no value bytes. Encoding 20,000 rows takes about a millisecond,
against about 9 ms through ``Copy.write_row`` (measured), which matters at 100,000 rows/s.
"""

from __future__ import annotations

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 UTC, PostgreSQL's timestamp origin

# COPY readings_staging (point_id int4, ts timestamptz, value float8, quality int2)
COLUMNS = "point_id, ts, value, quality"
_WITH_VALUE = np.dtype(
    [("n", ">i2"), ("l_p", ">i4"), ("p", ">i4"), ("l_t", ">i4"), ("t", ">i8"), ("l_v", ">i4"), ("v", ">f8"),
     ("l_q", ">i4"), ("q", ">i2")]
)  # fmt: skip
_NULL_VALUE = np.dtype(
    [("n", ">i2"), ("l_p", ">i4"), ("p", ">i4"), ("l_t", ">i4"), ("t", ">i8"), ("l_v", ">i4"), ("l_q", ">i4"),
     ("q", ">i2")]
)  # fmt: skip


def encode_readings(point_id: np.ndarray, ts_us: np.ndarray, value: np.ndarray, quality: np.ndarray) -> bytes:
    """COPY ... (FORMAT BINARY) data for (point_id, ts, value, quality); NaN values become NULL.

    ``ts_us`` are microseconds since the Unix epoch (UTC).
    """
    has_value = ~np.isnan(value)
    parts = [HEADER]
    for dtype, mask in ((_WITH_VALUE, has_value), (_NULL_VALUE, ~has_value)):
        n = int(mask.sum())
        if n == 0:
            continue
        rows = np.empty(n, dtype=dtype)
        rows["n"] = 4
        rows["l_p"] = 4
        rows["p"] = point_id[mask]
        rows["l_t"] = 8
        rows["t"] = ts_us[mask] - PG_EPOCH_US
        if dtype is _WITH_VALUE:
            rows["l_v"] = 8
            rows["v"] = value[mask]
        else:
            rows["l_v"] = -1
        rows["l_q"] = 2
        rows["q"] = quality[mask]
        parts.append(rows.tobytes())
    parts.append(TRAILER)
    return b"".join(parts)

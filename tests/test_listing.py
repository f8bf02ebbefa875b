"""The input listing: hostile entries become error rows, keys stay unique across windows, memory stays flat."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import image_bytes, write_list, write_named

from i2a_core.errors import ListError
from i2a_core.io import listing


def rows(roots, window: int = listing.WINDOW) -> list[dict]:
    tables = list(listing.list_windows([str(root) for root in roots], window))
    assert all(0 < table.num_rows <= window and table.schema == listing.SCHEMA for table in tables)
    return [row for table in tables for row in table.to_pylist()]


def assert_one_clean_line(text: str) -> None:
    assert "\n" not in text and "\r" not in text and "\x00" not in text and "\u2028" not in text, text


# --- 1. hostile entries: one error row each, the listing goes on ---


@pytest.mark.parametrize("entry, kind, words, shown", [
    ("bad\x00name.jpg", "bad_input", "holds a NUL byte", "bad\\x00name.jpg"),
    ("gs://bucket/x.jpg", "bad_url", "unsupported scheme gs://", "gs://bucket/x.jpg"),
    ("s3:///x.jpg", "bad_url", "no bucket", "s3:///x.jpg"),
    ("http://[::1/broken.png", "bad_url", "malformed URL", "http://[::1/broken.png"),
    ("http://host:99999/x.png", "bad_url", "malformed URL", "http://host:99999/x.png"),
    ("http:///x.png", "bad_url", "no host", "http:///x.png"),
    ("a\x1b[31mred.png", "bad_input", "control characters", "a\\x1b[31mred.png"),
    ("ftp://me:SECRET@host/x.png", "bad_url", "unsupported scheme ftp://", "ftp://host/x.png"),
])
def test_a_hostile_list_entry_is_an_error_row_and_the_rest_is_listed(tmp_path, entry, kind, words, shown):
    listed = write_list(tmp_path / "list.txt", ["a.png", entry, "http://h/b.png"])
    found = rows([listed])
    assert [row["input"] for row in found] == [str(tmp_path / "a.png"), shown, "http://h/b.png"]
    bad = found[1]
    assert (bad["error_kind"], bad["display"], bad["key"], bad["relative"]) == (kind, shown, "", "")
    assert bad["error"].startswith(f"{shown}: ") and words in bad["error"] and "line 2" in bad["error"]
    assert_one_clean_line(bad["error"])
    assert "SECRET" not in str(found)
    assert [row["error"] for row in (found[0], found[2])] == ["", ""]
    # The same through list_inputs: an InputItem that carries its error.
    items = listing.list_inputs([listed])
    assert (items[1].error, items[1].error_kind) == (bad["error"], kind)


def test_a_newline_inside_a_csv_field_is_an_error_row(tmp_path):
    listed = write_list(tmp_path / "list.csv", ["url,caption", "a.png,fine", '"forged\nline.png",x', "b.png,y"])
    found = rows([listed])
    assert [row["error_kind"] for row in found] == ["", "bad_input", ""]
    assert found[1]["display"] == "forged\\nline.png" and "control characters" in found[1]["error"]
    assert_one_clean_line(found[1]["error"])


def test_hostile_roots_are_error_rows_too(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    found = rows([tmp_path / "a.png", "gs://bucket/x.jpg", "s3:///x.jpg", "http://[::1/x.png"])
    assert [row["error_kind"] for row in found] == ["", "bad_url", "bad_url", "bad_url"]


def test_a_csv_field_over_the_limit_is_that_rows_error(tmp_path):
    long_caption = "y" * 200_000  # over the csv module's 131,072-character field limit
    listed = write_list(tmp_path / "list.csv", ["url,caption", "a.png,short", f"b.png,{long_caption}", "c.png,ok"])
    found = rows([listed])
    assert [row["input"] for row in found[::2]] == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert found[1]["error_kind"] == "bad_input" and found[1]["display"] == f"{listed}, line 3"
    assert found[1]["error"] == f"{listed}, line 3: a field over the 131,072-character limit"


def test_an_entry_over_the_limit_is_named_by_its_start(tmp_path):
    listed = write_list(tmp_path / "list.txt", ["a.png", "z" * 150_000 + ".png", "b.png"])
    found = rows([listed])
    assert [row["error_kind"] for row in found] == ["", "bad_input", ""]
    assert found[1]["display"].startswith("z" * 60 + "... (150,004 characters, ")
    assert len(found[1]["error"]) < 300 and "over the 131,072-character limit" in found[1]["error"]


def test_a_line_over_the_line_limit_is_skipped_as_an_error_row(tmp_path):
    listed = write_list(tmp_path / "list.txt", ["a.png", "x" * (listing.MAX_LINE_CHARS * 3 + 5), "b.png"])
    found = rows([listed])
    assert [row["input"] for row in found[::2]] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert found[1]["error_kind"] == "bad_input" and "line 2: a line over the" in found[1]["error"]


@pytest.mark.parametrize("name, lines", [
    ("list.txt", ["# a comment", "a.png", "b.png"]),
    ("list.csv", ["input,caption", "a.png,one", "b.png,two"]),
    ("bare.csv", ["a.png,one", "b.png,two"]),
])
def test_a_bom_is_not_part_of_the_first_entry(tmp_path, name, lines):
    listed = write_list(tmp_path / name, lines, bom=True, newline="\r\n")
    assert [row["relative"] for row in rows([listed])] == ["a.png", "b.png"]


def test_text_lists_split_lines_as_str_splitlines_does(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_bytes("a.png\rb.png\r\nc.png\x0cd.png\u2028e.png".encode())
    assert [row["relative"] for row in rows([listed])] == ["a.png", "b.png", "c.png", "d.png", "e.png"]


def test_whole_file_problems_stay_list_errors(tmp_path):
    late = tmp_path / "late.txt"  # fine for the first megabytes, then a byte that is not UTF-8
    late.write_bytes(b"a.png\n" * 400_000 + b"caf\xe9.png\n")
    windows = listing.list_windows([str(late)], window=1000)
    with pytest.raises(ListError, match=r"not a UTF-8 text file \(byte 2400003\)"):
        next(windows)  # before any window: nothing was handed out
    os.mkfifo(tmp_path / "fifo.txt")
    with pytest.raises(ListError, match="not a regular file"):
        rows([tmp_path / "fifo.txt"])
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ListError, match="a folder named like a .csv list file"):
        rows([tmp_path / "folder.csv"])
    (tmp_path / "text.parquet").write_text("input\na.png\n")
    with pytest.raises(ListError, match="not a Parquet file"):
        rows([tmp_path / "text.parquet"])


# --- 2. names that are not UTF-8 ---


def test_names_that_are_not_utf8_are_listed_losslessly(tmp_path):
    folder = tmp_path / "in"
    write_named(folder, b"caf\xe9.png", image_bytes(seed=1))
    write_named(folder, b"caf\xff.png", image_bytes(seed=2))
    write_named(folder, b"sub\xfe/x.jpg", image_bytes(seed=3))
    write_named(folder, b"plain.png", image_bytes(seed=4))
    found = rows([folder])  # an Arrow table holds them: no "surrogates not allowed"
    assert len(found) == 4
    by_bytes = {os.fsencode(listing.os_string(row["relative"])): row for row in found}
    assert sorted(by_bytes) == [b"caf\xe9.png", b"caf\xff.png", b"plain.png", b"sub\xfe/x.jpg"]
    for name, row in by_bytes.items():
        with open(listing.os_string(row["input"]), "rb") as f:  # `input` still opens the file
            assert f.read()[:4] == b"\x89PNG" or name.endswith(b".jpg")
        assert os.fsencode(listing.os_string(row["input"])) == os.path.join(os.fsencode(str(folder)), name)
        row["key"].encode("utf-8")
        assert_one_clean_line(row["display"])
    assert by_bytes[b"caf\xff.png"]["key"].startswith("caf%FF-")
    assert by_bytes[b"caf\xe9.png"]["key"].startswith("caf%E9-")
    assert by_bytes[b"sub\xfe/x.jpg"]["key"].startswith("sub%FE/x-")
    assert by_bytes[b"caf\xff.png"]["display"] == str(folder / "caf") + "\\xff.png"
    assert by_bytes[b"plain.png"]["key"] == "plain"
    # list_inputs gives the surrogate-escaped strings, whose UTF-8 (surrogateescape) bytes are the name's own.
    relatives = {item.relative.encode("utf-8", "surrogateescape") for item in listing.list_inputs([str(folder)])}
    assert relatives == set(by_bytes)


def test_a_root_that_is_not_utf8_is_listed(tmp_path):
    path = write_named(tmp_path, b"r\xff/a.png", b"x")
    root = os.fsdecode(os.path.dirname(path))  # what Python makes of such a command-line argument
    (row,) = rows([root])  # in an Arrow table
    assert os.fsencode(listing.os_string(row["input"])) == path and (row["relative"], row["key"]) == ("a.png", "a")
    assert row["display"] == os.path.dirname(str(tmp_path / "r")) + "/r\\xff/a.png"


# --- 3. keys and duplicates across the whole listing ---


def test_keys_are_unique_across_windows_and_case(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["a.jpg", "A.png", "b.gif", "c.jpg", "sub/a.jpg", "sub/A.JPG", "z.webp"]
    crafted = f"a-{listing._short_hash(str(folder / 'a.jpg'))}"  # the name a.jpg's suffixed key would take
    names += [f"{crafted}.png", f"{crafted.upper()}.jpeg"]
    for name in names:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"x")
    listed = write_list(tmp_path / "list.txt", [str(folder / "c.jpg"), "in/b.gif", str(folder / "A.png")])
    whole = rows([folder, listed])
    for window in (1, 2, 3, 5):
        assert rows([folder, listed], window) == whole
    # The list names three inputs the folder already listed: an input listed twice is one input.
    assert len(whole) == len(names)
    keys = [row["key"] for row in whole]
    assert len({key.lower() for key in keys}) == len(keys)
    by_name = {row["relative"]: row["key"] for row in whole}
    assert by_name["b.gif"] == "b" and by_name["c.jpg"] == "c" and by_name["z.webp"] == "z"
    assert by_name["a.jpg"] != "a" and by_name["A.png"] != "A" and by_name["a.jpg"].lower() != crafted.lower()


def test_keys_are_the_same_as_with_keys_gives(tmp_path):
    pairs = [("/r/a.jpg", "a.jpg"), ("/r/a.png", "a.png"), ("/r/A.gif", "A.gif"), ("/r/b.jpg", "b.jpg"),
             ("/r/b.jpg", "b.jpg")]
    items = listing._with_keys(pairs)
    keys = [item.key for item in items]
    assert len(items) == 4 and len({k.lower() for k in keys}) == 4 and keys[3] == "b"


def test_the_vectorised_keys_are_safe_key(tmp_path):
    random.seed(7)
    alphabet = ["a", "B", ".", "/", " ", "_", "-", "\\", "é", "猫", "\u200b", "\u00a0", "\t", "x", "\U0001f600"]
    relatives = ["".join(random.choice(alphabet) for _ in range(random.randint(0, 12))) for _ in range(20_000)]
    relatives += ["猫" * 49 + "/a.png", "猫" * 51 + ".png", "a/_.png", "_", "a/_.tar.gz", "x.", "a//b.png"]
    wanted = pa.array([True] * len(relatives)).to_numpy(zero_copy_only=False)
    fast = listing._base_keys(pa.array(relatives), wanted).to_pylist()
    assert fast == [listing.safe_key(relative) for relative in relatives]


def test_s3_prefixes_are_listed_a_page_at_a_time_in_windows(s3_bucket, monkeypatch):
    import fsspec

    fs = fsspec.filesystem("s3")
    names = [f"set/{i % 4}/img{i:03d}.{'jpg' if i % 3 else 'PNG'}" for i in range(30)] + ["set/notes.txt"]
    for name in names:
        fs.pipe_file(f"{s3_bucket[5:]}/{name}", b"x")
    calls = []
    real = type(fs).call_s3

    def counted(self, method, *args, **kwargs):
        calls.append(kwargs.get("MaxKeys"))
        return real(self, method, *args, **kwargs)

    monkeypatch.setattr(listing, "_S3_PAGE", 7)
    monkeypatch.setattr(type(fs), "call_s3", counted)
    found = rows([f"{s3_bucket}/set"], window=4)
    assert calls == [7] * 5  # 31 keys, 7 a page
    expected = sorted(name for name in names if not name.endswith(".txt"))
    assert [row["input"] for row in found] == [f"{s3_bucket}/{name}" for name in expected]
    assert [row["relative"] for row in found] == [name[len("set/"):] for name in expected]
    assert len({row["key"].lower() for row in found}) == 30


def test_avif_and_heic_files_are_listed(tmp_path):
    for name in ("a.avif", "b.HEIC", "c.heif", "d.png", "e.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [row["relative"] for row in rows([tmp_path])] == ["a.avif", "b.HEIC", "c.heif", "d.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_a_folder_that_cannot_be_read_is_an_error_row(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.png").write_bytes(b"x")
    os.chmod(tmp_path / "locked", 0)
    try:
        found = rows([tmp_path])
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert [row["error_kind"] for row in found] == ["", "unreadable"]


def test_parquet_lists_are_read_in_batches(tmp_path):
    paths = [f"img/{i}.png" for i in range(20_000)]
    pq.write_table(pa.table({"n": range(len(paths)), "path": paths}), tmp_path / "list.parquet", row_group_size=3000)
    found = rows([tmp_path / "list.parquet"], window=7000)
    assert [row["relative"] for row in found] == paths and found[-1]["key"] == "img/19999"


# --- 4. memory ---

_PEAK = textwrap.dedent("""
    import os, sys
    from i2a_core.io import listing
    folder, count = sys.argv[1], int(sys.argv[2])
    listing.list_inputs([os.path.join(folder, "warm.txt")])  # imports pyarrow's lazy modules
    path = os.path.join(folder, f"list-{count}.txt")
    with open(path, "w") as f:
        f.writelines(f"images/part{i % 1000:04d}/image_{i:09d}.jpg\\n" for i in range(count))
    def peak_kb():  # VmHWM: ru_maxrss would start from the parent's resident size at fork
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    before = peak_kb()
    listed = sum(window.num_rows for window in listing.list_windows([path], window=4096))
    assert listed == count, listed
    print(peak_kb() - before)
""")


def peak_growth_kb(folder, count: int) -> int:
    """How far listing `count` entries raised the peak memory of a fresh process, in KB."""
    result = subprocess.run([sys.executable, "-c", _PEAK, str(folder), str(count)], capture_output=True, text=True,
                            timeout=600, check=True)
    return int(result.stdout.split()[-1])


def test_listing_memory_does_not_grow_with_the_number_of_entries(tmp_path):
    (tmp_path / "warm.txt").write_text("a.png\n")
    small, large = peak_growth_kb(tmp_path, 20_000), peak_growth_kb(tmp_path, 200_000)
    # list_inputs before streaming grew ~0.7 KB per entry: 126 MB more for the 180,000 more entries.
    assert large - small < 30_000, (small, large)

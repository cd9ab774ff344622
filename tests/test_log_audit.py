"""`petitions audit`: a saved copy built here, by the spec, is checked offline, then damaged
one way at a time; the online reading is checked against a small loopback server."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from petitions import merkle
from petitions.cli import main
from petitions.log_audit import LogChecker, petition_address
from petitions.log_keys import LogKey, TreeHead, sign_head

KEY = LogKey.from_material(b"test" * 8)
ADDRESS = "https://example.org/p/haft-tapeh"
HOUR = "2026-11-27T02Z"


# A test-only log builder: leaves written as the spec says, roots from merkle, heads signed.


def commitment(n: int) -> str:
    return hashlib.sha256(b"petitions-receipt-v1\x00" + n.to_bytes(8, "big")).hexdigest()


class Log:
    def __init__(self) -> None:
        self.entries: list[dict] = []

    def add(self, hour: str | None = None, version: int = 1) -> int:
        index, hour = len(self.entries), hour or self.hour
        self.entries.append(
            {"index": index, "kind": "add", "hour": hour, "version": version,
             "commitment": commitment(index)}
        )  # fmt: skip
        return index

    def remove(self, leaf: int, reason: str = "withdrawn", hour: str | None = None) -> int:
        index, hour = len(self.entries), hour or self.hour
        self.entries.append(
            {"index": index, "kind": "remove", "hour": hour, "leaf": leaf, "reason": reason}
        )
        return index

    def restore(self, leaf: int, hour: str | None = None) -> int:
        index, hour = len(self.entries), hour or self.hour
        self.entries.append({"index": index, "kind": "restore", "hour": hour, "leaf": leaf})
        return index

    @property
    def hour(self) -> str:
        """New leaves are in the hour of the last one, unless told otherwise."""
        return self.entries[-1]["hour"] if self.entries else HOUR

    def root(self, size: int) -> bytes:
        return merkle.root_of([merkle.leaf_hash(leaf_data(e)) for e in self.entries[:size]])

    def count(self, size: int) -> int:
        kinds = [e["kind"] for e in self.entries[:size]]
        return kinds.count("add") + kinds.count("restore") - kinds.count("remove")

    def head(self, size: int, *, count: int | None = None, origin: str = ADDRESS) -> dict:
        count = self.count(size) if count is None else count
        return sign_head(KEY, origin, size, self.root(size), count, HOUR).as_json()


def leaf_data(entry: dict) -> bytes:
    """The hashed bytes, written straight from the spec (not through log_format)."""
    if entry["kind"] == "add":
        fields = ["add", entry["hour"], entry["version"], entry["commitment"]]
    elif entry["kind"] == "remove":
        fields = ["remove", entry["hour"], entry["leaf"], entry["reason"]]
    else:
        fields = ["restore", entry["hour"], entry["leaf"]]
    return "\t".join(str(f) for f in fields).encode()


def sample_log() -> Log:
    """40 leaves: adds over three hours, two withdrawals, a rejection and a restore."""
    log = Log()
    for _ in range(12):
        log.add()
    log.remove(3)
    for _ in range(8):
        log.add(hour="2026-11-27T03Z", version=2)
    log.remove(5, "rejected", hour="2026-11-27T03Z")
    log.restore(3, hour="2026-11-27T03Z")
    while len(log.entries) < 39:
        log.add(hour="2026-11-27T05Z", version=2)
    log.remove(30, "invalidated", hour="2026-11-27T05Z")
    return log


SIZES = (0, 10, 25, 40)


def save_copy(directory: Path, log: Log, heads: list[dict] | None = None, latest=None) -> Path:
    heads = [log.head(size) for size in SIZES] if heads is None else heads
    directory.mkdir(exist_ok=True)
    (directory / "log.json").write_text(json.dumps(latest or heads[-1]))
    (directory / "heads.json").write_text(json.dumps(heads))
    (directory / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log.entries))
    (directory / "count.json").write_text(json.dumps({"slug": "haft-tapeh", "count": 37}))
    (directory / "source.txt").write_text(ADDRESS + "\n")
    return directory


def audit(*args: str) -> int:
    return main(["audit", *args])


def failed_line(capsys) -> str:
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("FAILED: ")]
    assert len(lines) == 1, out
    return lines[0]


# A good copy -----------------------------------------------------------------------------


def test_a_good_copy_passes(tmp_path, capsys):
    log = sample_log()
    copy = save_copy(tmp_path / "copy", log)
    assert audit("--from", str(copy)) == 0
    out = capsys.readouterr().out
    assert f"petition: {ADDRESS}" in out
    assert "leaves: 40" in out
    assert "heads checked: 4" in out and KEY.key_id in out
    assert f"count: {log.count(40)}\n" in out
    assert "count.json: 37" in out
    assert out.rstrip().endswith("OK")


def test_the_address_given_must_be_the_copy_s(tmp_path, capsys):
    copy = save_copy(tmp_path / "copy", sample_log())
    assert audit(f"{ADDRESS}/", "--from", str(copy)) == 0
    assert audit(f"{ADDRESS}/log.json", "--from", str(copy)) == 0
    capsys.readouterr()
    assert audit("https://example.org/p/another", "--from", str(copy)) == 2
    assert "is a copy of https://example.org/p/haft-tapeh" in capsys.readouterr().err


def test_the_checker_needs_no_files():
    log = sample_log()
    checker = LogChecker(ADDRESS)
    checker.start(log.head(40))
    for size in SIZES:
        checker.add_head(log.head(size))
    checker.end_of_heads()
    for entry in log.entries:
        checker.add(entry)
    result = checker.finish()
    assert (result.size, result.count, result.heads) == (40, log.count(40), 4)


# Damage, one kind at a time --------------------------------------------------------------


def test_a_changed_leaf_names_the_head_and_the_range(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    log.entries[17]["commitment"] = commitment(1000)
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    line = failed_line(capsys)
    assert line.startswith("FAILED: head at size 25: ")
    assert "leaves [10, 25)" in line


def test_a_removed_leaf_is_named(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    del log.entries[17]
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys).startswith("FAILED: leaf 17 is missing")


def test_a_removed_leaf_renumbered_is_caught_by_the_root(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    del log.entries[17]
    for index, entry in enumerate(log.entries):
        entry["index"] = index
        if entry.get("leaf", 0) > 17:
            entry["leaf"] -= 1
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys).startswith("FAILED: head at size 25: ")


def test_a_swapped_pair_is_named(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    log.entries[14], log.entries[15] = log.entries[15], log.entries[14]
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys) == (
        "FAILED: leaf 14 is missing or out of place: the entry after leaf 13 is leaf 15"
    )


def test_a_swapped_pair_renumbered_is_caught_by_the_root(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    first, second = log.entries[26], log.entries[27]
    first["index"], second["index"] = 27, 26
    log.entries[26], log.entries[27] = second, first
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    line = failed_line(capsys)
    assert line.startswith("FAILED: head at size 40: ") and "leaves [25, 40)" in line


def test_a_forked_head_is_named_with_both_roots(tmp_path, capsys):
    log = sample_log()
    other = sample_log()
    other.entries[20]["version"] = 1  # another history from leaf 20 on
    heads = [log.head(size) for size in SIZES]
    heads.insert(3, other.head(25))  # validly signed, same size, another root
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    line = failed_line(capsys)
    assert line.startswith("FAILED: head at size 25: ") and "forked" in line
    assert log.root(25).hex()[:16] in line and other.root(25).hex()[:16] in line


def test_a_latest_head_from_another_history_is_a_fork(tmp_path, capsys):
    log = sample_log()
    other = sample_log()
    other.entries[33]["version"] = 7
    copy = save_copy(tmp_path / "c", log, latest=other.head(40))
    assert audit("--from", str(copy)) == 1
    line = failed_line(capsys)
    assert line.startswith("FAILED: head at size 40: ") and "forked" in line


def test_a_head_with_a_bad_signature_is_named(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    forged = TreeHead.from_json(heads[2])
    heads[2] = sign_head(LogKey.from_material(b"mallory" * 5), ADDRESS, 25, forged.root,
                         forged.count, HOUR).as_json()  # fmt: skip
    heads[2]["public_key"], heads[2]["key_id"] = heads[1]["public_key"], heads[1]["key_id"]
    heads[2]["checkpoint"] = forged.checkpoint
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys) == "FAILED: head at size 25: its signature does not verify"


def test_a_head_with_a_wrong_count_is_named(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    heads[2] = log.head(25, count=log.count(25) + 1)
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    line = failed_line(capsys)
    assert line.startswith(f"FAILED: head at size 25: it says {log.count(25) + 1} signatures")
    assert f"the leaves give {log.count(25)}" in line


def test_a_head_for_another_petition_is_named(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    heads[1] = log.head(10, origin="https://example.org/p/other")
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys).startswith("FAILED: head at size 10: it is signed for ")


def test_a_remove_of_a_leaf_that_does_not_count_is_named(tmp_path, capsys):
    log = sample_log()
    log.remove(3)  # leaf 40: leaf 3 was removed at 12 and restored at 22; fine
    log.remove(3)  # leaf 41: removed again, although it no longer counts
    heads = [log.head(size) for size in (*SIZES, 42)]  # signed over it: the roots agree
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys) == (
        "FAILED: leaf 41: it removes leaf 3, which does not count at this point"
    )


def test_leaf_rules_are_checked(tmp_path, capsys):
    cases = {
        "restore": (lambda log: log.restore(0), "it restores leaf 0, which already counts"),
        "target": (lambda log: log.remove(12), "it names leaf 12, which is not an add leaf"),
        "hour": (lambda log: log.add(hour="2026-11-27T01Z"), "hours go backwards"),
        "reason": (lambda log: log.remove(0, reason="bored"), "unknown reason"),
    }
    for name, (damage, message) in cases.items():
        log = sample_log()
        damage(log)
        copy = save_copy(tmp_path / name, log, [log.head(size) for size in (*SIZES, 41)])
        assert audit("--from", str(copy)) == 1, name
        line = failed_line(capsys)
        assert line.startswith("FAILED: leaf 40: ") and message in line, line


def test_entries_must_reach_the_latest_head(tmp_path, capsys):
    log = sample_log()
    heads = [log.head(size) for size in SIZES]
    del log.entries[36:]
    assert audit("--from", str(save_copy(tmp_path / "c", log, heads))) == 1
    assert failed_line(capsys).startswith("FAILED: leaf 36 is missing")


# --since ---------------------------------------------------------------------------------


def test_since_a_saved_head_of_this_history(tmp_path, capsys):
    log = sample_log()
    copy = save_copy(tmp_path / "c", log)
    saved = tmp_path / "old-log.json"
    saved.write_text(json.dumps(log.head(17)))  # a size no head of heads.json has
    assert audit("--from", str(copy), "--since", str(saved)) == 0
    out = capsys.readouterr().out
    assert f"since 17:{log.root(17).hex()[:16]}: the log only grew" in out


def test_since_a_head_from_another_history_fails(tmp_path, capsys):
    log = sample_log()
    other = sample_log()
    other.entries[8]["commitment"] = commitment(999)
    saved = tmp_path / "old-log.json"
    saved.write_text(json.dumps(other.head(25)))
    assert audit("--from", str(save_copy(tmp_path / "c", log)), "--since", str(saved)) == 1
    line = failed_line(capsys)
    assert line.startswith(f"FAILED: the saved head 25:{other.root(25).hex()[:16]} ")
    assert "history was rewritten" in line


def test_since_the_short_form(tmp_path, capsys):
    log = sample_log()
    copy = save_copy(tmp_path / "c", log)
    short = tmp_path / "short.txt"
    short.write_text(f"25:{log.root(25).hex()[:16]}\n")
    assert audit("--from", str(copy), "--since", str(short)) == 0
    assert "the log only grew" in capsys.readouterr().out
    short.write_text(f"25:{log.root(24).hex()[:16]}\n")
    assert audit("--from", str(copy), "--since", str(short)) == 1
    assert failed_line(capsys).startswith("FAILED: the saved head 25:")


def test_since_a_larger_head_than_the_log_fails(tmp_path, capsys):
    log = sample_log()
    copy = save_copy(tmp_path / "c", log)
    log.add()
    saved = tmp_path / "old-log.json"
    saved.write_text(json.dumps(log.head(41)))
    assert audit("--from", str(copy), "--since", str(saved)) == 1
    assert "the log has shrunk or forked" in failed_line(capsys)


def test_since_files_that_are_no_head(tmp_path, capsys):
    copy = save_copy(tmp_path / "c", sample_log())
    head = sample_log().head(25)
    head["count"] += 1  # the signature no longer covers it
    bad = {"garbage.txt": "hello", "unsigned.json": json.dumps(head), "cut.json": '{"size": 1'}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        assert audit("--from", str(copy), "--since", str(tmp_path / name)) == 2
        err = capsys.readouterr().err
        assert err.startswith("petitions audit: ") and err.count("\n") == 1, err


# Files that cannot be audited: exit 2, one line, no traceback -----------------------------


@pytest.mark.parametrize(
    "name, damage",
    [
        ("log.json", lambda text: text[: len(text) // 2]),
        ("heads.json", lambda text: text[:-5]),
        ("heads.json", lambda text: '{"heads": []}'),
        ("entries.jsonl", lambda text: text[:-30]),
        ("entries.jsonl", lambda text: text.replace("}\n", "}\n\0\n", 1)),
        ("count.json", lambda text: "[1, 2"),
        ("source.txt", lambda text: "ftp://example.org/p/haft-tapeh"),
    ],
)
def test_malformed_files_exit_2(tmp_path, capsys, name, damage):
    copy = save_copy(tmp_path / "c", sample_log())
    path = copy / name
    path.write_text(damage(path.read_text()))
    assert audit("--from", str(copy)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("petitions audit: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and "FAILED" not in captured.out


def test_a_missing_copy_and_bad_addresses_exit_2(tmp_path, capsys):
    assert audit("--from", str(tmp_path / "nowhere")) == 2
    for url in ("example.org/p/x", "https://example.org/x", "https://example.org/p/x?y=1",
                "https://example.org/p/x/log/entries.json", "file:///etc/p/x"):  # fmt: skip
        assert audit(url) == 2, url
    assert audit() == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(
        line.startswith("petitions audit: ") for line in err.splitlines()
    )


def test_addresses():
    assert petition_address("HTTPS://Example.ORG/p/haft-tapeh/") == ADDRESS
    assert petition_address(f"{ADDRESS}/log.json") == ADDRESS
    assert petition_address("http://127.0.0.1:8000/base/p/x") == "http://127.0.0.1:8000/base/p/x"


def test_the_command_needs_no_settings(tmp_path, capsys, monkeypatch):
    copy = save_copy(tmp_path / "copy", sample_log())
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SMTP_TLS", "nonsense")  # settings would not even load
    assert main(["audit", "--from", str(copy)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")
    assert not (tmp_path / "data").exists()  # no secret key made


# Online, against a small loopback server serving the endpoints' formats --------------------


class LogSite:
    """The log's JSON endpoints as the spec describes them, with small pages so that the
    auditor has to follow `next` links (heads 3 a page, entries 7)."""

    def __init__(self, log: Log, sizes=SIZES) -> None:
        self.log = log
        self.broken: dict[str, tuple[int, bytes]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                if url.path in site.broken:
                    status, body = site.broken[url.path]
                else:
                    status, body = site.answer(url.path, parse_qs(url.query))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.address = f"{self.base}/p/haft-tapeh"
        self.next_base = self.address  # what the site calls itself in `next` links
        self.heads = [log.head(size, origin=self.address) for size in sizes]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def answer(self, path: str, query: dict) -> tuple[int, bytes]:
        latest = self.heads[-1]
        prefix = "/p/haft-tapeh"
        number = {k: int(v[0]) for k, v in query.items()}
        if path == f"{prefix}/log.json":
            body = latest
        elif path == f"{prefix}/count.json":
            body = {"slug": "haft-tapeh", "count": latest["count"] + 2}
        elif path == f"{prefix}/log/heads.json":
            after = number.get("after", -1)
            page = [h for h in self.heads if h["size"] > after][:3]
            more = len([h for h in self.heads if h["size"] > after]) > 3
            next_url = f"{self.next_base}/log/heads.json?after={page[-1]['size']}" if more else None
            body = {"heads": page, "next": next_url}
        elif path == f"{prefix}/log/entries.json":
            start, end = number["start"], min(number["end"], latest["size"], number["start"] + 7)
            next_url = (
                f"{self.next_base}/log/entries.json?start={end}&end={latest['size']}"
                if end < latest["size"]
                else None
            )
            body = {"start": start, "end": end, "size": latest["size"],
                    "entries": self.log.entries[start:end], "next": next_url}  # fmt: skip
        elif path == f"{prefix}/log/consistency.json":
            first, second = number["first"], number["second"]
            ranges = merkle.consistency_proof_ranges(first, second)
            hashes = [range_root(self.log, a, b) for a, b in ranges]
            body = {"first": first, "second": second, "consistency": [h.hex() for h in hashes]}
        else:
            return 404, b'{"error": "not found"}'
        return 200, json.dumps(body).encode()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def range_root(log: Log, start: int, end: int) -> bytes:
    return merkle.root_of([merkle.leaf_hash(leaf_data(e)) for e in log.entries[start:end]])


def test_online_audit_saves_a_copy_that_audits_offline(tmp_path, capsys):
    log = sample_log()
    saved_head = tmp_path / "old.txt"
    with LogSite(log) as site:
        saved_head.write_text(json.dumps(site.heads[1]))
        copy = tmp_path / "saved"
        assert audit(site.address + "/", "--save", str(copy), "--since", str(saved_head)) == 0
        out = capsys.readouterr().out
        assert "leaves: 40" in out and "heads checked: 4" in out
        assert f"count.json: {log.count(40) + 2}" in out and "the log only grew" in out
    assert sorted(p.name for p in copy.iterdir()) == [
        "count.json", "entries.jsonl", "heads.json", "log.json", "source.txt"
    ]  # fmt: skip
    assert (copy / "source.txt").read_text() == site.address + "\n"
    assert [json.loads(line) for line in (copy / "entries.jsonl").open()] == log.entries
    assert json.loads((copy / "heads.json").read_text()) == site.heads
    assert audit("--from", str(copy), "--since", str(saved_head)) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")


def test_online_a_bad_consistency_proof_fails(tmp_path, capsys):
    log = sample_log()
    with LogSite(log) as site:
        saved = tmp_path / "old.txt"
        saved.write_text(f"17:{log.root(17).hex()[:16]}")
        site.broken["/p/haft-tapeh/log/consistency.json"] = (
            200, json.dumps({"first": 17, "second": 40, "consistency": [log.root(3).hex()]}
                            ).encode())  # fmt: skip
        assert audit(site.address, "--since", str(saved)) == 1
    assert "consistency proof" in failed_line(capsys)


def test_online_a_failed_audit_still_saves_the_evidence(tmp_path, capsys):
    log = sample_log()
    with LogSite(log) as site:
        log.entries[17]["commitment"] = commitment(1000)  # after the heads were signed
        assert audit(site.address, "--save", str(tmp_path / "evidence")) == 1
        assert failed_line(capsys).startswith("FAILED: head at size 25: ")
    assert audit("--from", str(tmp_path / "evidence")) == 1
    assert failed_line(capsys).startswith("FAILED: head at size 25: ")


@pytest.mark.parametrize(
    "path, status, body, message",
    [
        ("/p/haft-tapeh/log.json", 404, b'{"error": "not found"}', "answered 404"),
        ("/p/haft-tapeh/log.json", 200, b"<html>hello</html>", "not JSON"),
        ("/p/haft-tapeh/log/heads.json", 200, b'{"heads": 3}', "no list of heads"),
        ("/p/haft-tapeh/log/entries.json", 500, b"oops", "answered 500"),
        ("/p/haft-tapeh/log/entries.json", 200, b'{"entries": [', "not JSON"),
    ],
)
def test_online_errors_exit_2_in_one_line(tmp_path, capsys, path, status, body, message):
    with LogSite(sample_log()) as site:
        site.broken[path] = (status, body)
        assert audit(site.address, "--save", str(tmp_path / "copy")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not list((tmp_path / "copy").iterdir())  # no half copy left


def test_online_next_links_are_followed_on_the_audited_site(capsys):
    with LogSite(sample_log()) as site:
        site.next_base = "http://10.0.0.5:8000/p/haft-tapeh"  # behind a proxy
        assert audit(site.address) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")


def test_online_next_links_must_stay_on_the_site(capsys):
    log = sample_log()
    with LogSite(log) as site:
        page = {"heads": site.heads[:1], "next": "https://elsewhere.example/heads.json"}
        site.broken["/p/haft-tapeh/log/heads.json"] = (200, json.dumps(page).encode())
        assert audit(site.address) == 2
    assert "outside this log" in capsys.readouterr().err

"""`petitions audit`: check a petition's transparency log from the outside.

It reads the log (from the site, or from a copy saved earlier), recomputes the
Merkle tree and the count from the leaves, and checks every signed head against
them: a changed, removed, reordered or invented leaf, a forked history or a
forged head is named. Reading (`SiteSource`, `SavedCopy`, `CopyWriter`) is kept
apart from checking (`LogChecker`, fed plain JSON objects), so the checks run
the same on the site, on a saved copy and in tests. The formats are described in
docs/integrity.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from . import __version__, merkle
from .log_format import BadLeaf, Leaf
from .log_keys import SHORT_HEX, BadHead, TreeHead

ENTRIES_PAGE = 10_000  # what entries.json serves at most per request
TIMEOUT_SECONDS = 30
# Bounds on what is read, so a hostile or broken site cannot exhaust memory.
MAX_SMALL_JSON = 64 * 1024  # log.json, count.json, consistency.json, a --since file
MAX_HEADS_PAGE = 8 * 1024 * 1024  # 1,000 heads
MAX_ENTRIES_PAGE = 16 * 1024 * 1024  # 10,000 entries
MAX_ENTRY_LINE = 4096  # one line of a saved entries.jsonl
MAX_HEADS = 5_000_000  # of one log (one a minute while it grows: ten years' worth)
MAX_SAVED_HEADS = 2**31  # bytes of a saved heads.json, which is read whole

_ADDRESS = re.compile(
    r"^(?P<site>https?://[^/?#@\s]+(?:/[^/?#\s]+)*?)/p/"
    r"(?P<slug>[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?)(?:/|/log\.json)?$"
)
_SHORT_HEAD = re.compile(r"^(\d{1,18}):([0-9a-f]{16,64})$")

# What the checker remembers of each add leaf (one byte per leaf, so a million fit in 1 MB).
NOT_AN_ADD, COUNTING, NOT_COUNTING = 0, 1, 2


class AuditError(Exception):
    """The audit could not be made (a bad address, an unreachable site, a file that is not
    JSON): exit status 2."""


class AuditFailure(Exception):
    """The log does not check: the message names the first bad leaf or head. Exit status 1."""


def petition_address(url: str) -> str:
    """The petition's public address (what its heads are signed for) from what was typed:
    https://host/p/slug, with a trailing slash, or the address of its log.json."""
    url = url.strip()
    scheme, _, rest = url.partition("://")
    if len(url) <= 2000:
        site, slash, path = rest.partition("/")
        match = _ADDRESS.match(f"{scheme.lower()}://{site.lower()}{slash}{path}")
        if match:
            return f"{match['site']}/p/{match['slug']}"
    raise AuditError(
        f"{url[:200]!r} is not a petition's address: give it as https://example.org/p/SLUG"
    )


# Heads saved earlier (--since) -------------------------------------------------------


@dataclass(frozen=True)
class SavedHead:
    """A head kept from an earlier visit: a whole signed head, or its short form."""

    size: int
    root_hex: str  # the whole root of a signed head; at least its first 16 digits otherwise
    head: TreeHead | None = None

    @property
    def short(self) -> str:
        return f"{self.size}:{self.root_hex[:SHORT_HEX]}"

    def matches(self, root: bytes) -> bool:
        return root.hex().startswith(self.root_hex)


def read_saved_head(path: Path) -> SavedHead:
    """A --since file: a head's JSON (such as a saved log.json) or SIZE:ROOT as emails print it."""
    text = _read_text(path, MAX_SMALL_JSON).strip()
    if text.startswith("{"):
        try:
            head = TreeHead.from_json(json.loads(text))
        except ValueError as error:  # BadHead and JSONDecodeError alike
            raise AuditError(f"{path}: not a signed head: {error}") from None
        if not head.signature_valid():
            raise AuditError(f"{path}: the head's signature does not verify, so it proves nothing")
        return SavedHead(head.size, head.root.hex(), head)
    match = _SHORT_HEAD.match(text.lower())
    if not match:
        raise AuditError(
            f"{path}: expected a signed head (JSON, such as a saved log.json) or its short form "
            "SIZE:ROOT as printed in emails, such as 1200:3f1a9c0b2e4d5f6a"
        )
    return SavedHead(int(match[1]), match[2])


# Checking -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    address: str
    size: int  # leaves checked: the latest head's size
    count: int  # the count recomputed from them, which the latest head states too
    heads: int  # signed heads checked
    key_ids: tuple[str, ...]
    since: SavedHead | None


class LogChecker:
    """Every check of the audit, in one pass and without I/O: feed it the latest head,
    then every head (ascending by size), then every entry in index order, then `finish()`.
    Each step raises AuditFailure naming the first thing that is wrong."""

    def __init__(self, address: str, since: SavedHead | None = None) -> None:
        self.address = address
        self.since = since
        self.latest: TreeHead | None = None
        self.key_ids: dict[str, None] = {}  # in order of appearance
        # The heads to compare with the tree, compactly: a busy log has one a minute.
        self._sizes, self._counts, self._roots = array("q"), array("q"), bytearray()
        self._next_head = 0  # the first head whose size the leaves have not reached yet
        self._checked_size = 0  # size of the last head whose root matched the leaves
        self._since_root: bytes | None = None
        self.frontier = merkle.Frontier()
        self.count = 0
        self._hour = ""
        self._leaves = bytearray()  # NOT_AN_ADD, COUNTING or NOT_COUNTING per leaf
        self._stop_at = 0  # the next size at which a head (or the saved head) is compared

    @property
    def size(self) -> int:
        return self.frontier.size

    def start(self, raw_latest: object) -> TreeHead:
        """The latest head (log.json): the size the entries must reach."""
        latest = self._signed_head(raw_latest, "log.json")
        self.latest = latest
        if self.since and self.since.size > latest.size:
            raise AuditFailure(
                f"the saved head {self.since.short} is larger than the latest head "
                f"{latest.short}: the log has shrunk or forked since it was saved"
            )
        return latest

    def add_head(self, raw: object) -> None:
        """The next head of heads.json."""
        head = self._signed_head(raw, "heads.json")
        name = f"head at size {head.size:,}"
        if head.size > self.latest.size:
            raise AuditFailure(
                f"{name}: it is larger than the latest head (log.json, size {self.latest.size:,})"
            )
        if self._sizes and head.size <= self._sizes[-1]:
            previous = len(self._sizes) - 1
            if head.size == self._sizes[previous]:
                earlier = bytes(self._roots[32 * previous : 32 * previous + 32])
                if earlier != head.root:
                    raise AuditFailure(
                        f"{name}: two heads are signed for this size with different roots "
                        f"({head.size}:{earlier.hex()[:SHORT_HEX]} and {head.short}): "
                        "the log has forked"
                    )
                raise AuditFailure(f"{name}: heads.json lists a head of this size twice")
            raise AuditFailure(
                f"{name}: it comes after the head at size {self._sizes[-1]:,}: "
                "heads are not in ascending order"
            )
        if len(self._sizes) >= MAX_HEADS:
            raise AuditError(f"heads.json lists more than {MAX_HEADS:,} heads: not audited")
        self._sizes.append(head.size)
        self._counts.append(head.count)
        self._roots += head.root
        self.key_ids.setdefault(head.key_id)

    def end_of_heads(self) -> None:
        """After the last head: the latest head must be among them (the last, then)."""
        latest = self.latest
        if not self._sizes or self._sizes[-1] != latest.size:
            raise AuditFailure(
                f"head at size {latest.size:,}: the latest head (log.json) is not among heads.json"
            )
        root = bytes(self._roots[-32:])
        if root != latest.root:
            raise AuditFailure(
                f"head at size {latest.size:,}: log.json ({latest.short}) and heads.json "
                f"({latest.size}:{root.hex()[:SHORT_HEX]}) give two different roots: "
                "the log has forked"
            )
        self._stop_at = self._next_stop()
        if self._stop_at == 0:
            self._reached()

    def add(self, entry: object) -> None:
        """The next entry of entries.json: the leaf at index `self.size`."""
        index = self.frontier.size
        if index >= self.latest.size:
            raise AuditFailure(
                f"leaf {index:,}: there are more entries than the latest head's "
                f"{self.latest.size:,} leaves"
            )
        given = entry.get("index") if isinstance(entry, dict) else None
        if given != index or type(given) is not int:
            raise AuditFailure(self._misplaced(index, given))
        try:
            leaf = Leaf.from_json(entry)
        except BadLeaf as error:
            raise AuditFailure(f"leaf {index:,}: {error}") from None
        if leaf.hour < self._hour:
            raise AuditFailure(
                f"leaf {index:,}: its hour {leaf.hour} is before the previous leaf's "
                f"{self._hour}: hours go backwards"
            )
        self._hour = leaf.hour
        leaves = self._leaves
        if leaf.kind == "add":
            leaves.append(COUNTING)
            self.count += 1
        else:
            leaves.append(NOT_AN_ADD)
            target = leaf.target
            state = leaves[target]
            if state == NOT_AN_ADD:
                raise AuditFailure(
                    f"leaf {index:,}: it names leaf {target:,}, which is not an add leaf"
                )
            if leaf.kind == "remove":
                if state != COUNTING:
                    raise AuditFailure(
                        f"leaf {index:,}: it removes leaf {target:,}, which does not count "
                        "at this point"
                    )
                leaves[target] = NOT_COUNTING
                self.count -= 1
            else:
                if state != NOT_COUNTING:
                    raise AuditFailure(
                        f"leaf {index:,}: it restores leaf {target:,}, which already counts"
                    )
                leaves[target] = COUNTING
                self.count += 1
        self.frontier.append(merkle.leaf_hash(leaf.data()))
        if index + 1 == self._stop_at:
            self._reached()

    def finish(self) -> AuditResult:
        """After the last entry: the entries must reach the latest head."""
        if self.frontier.size < self.latest.size:
            missing = self.frontier.size
            raise AuditFailure(
                f"leaf {missing:,} is missing: the entries end after {missing:,} leaves, "
                f"the latest head covers {self.latest.size:,}"
            )
        return AuditResult(
            self.address,
            self.frontier.size,
            self.count,
            len(self._sizes),
            tuple(self.key_ids),
            self.since,
        )

    @property
    def since_root(self) -> bytes | None:
        """The root at the saved head's size, recomputed (once the leaves reached it)."""
        return self._since_root

    def _signed_head(self, raw: object, where: str) -> TreeHead:
        size = raw.get("size") if isinstance(raw, dict) else None
        what = f"head at size {size:,}" if type(size) is int else f"a head of {where}"
        if where == "log.json":
            what += " (log.json)"
        try:
            head = TreeHead.from_json(raw)
        except BadHead as error:
            raise AuditFailure(f"{what}: {error}") from None
        if not head.signature_valid():
            raise AuditFailure(f"{what}: its signature does not verify")
        if raw.get("checkpoint") != head.checkpoint or raw.get("short") != head.short:
            raise AuditFailure(f"{what}: its checkpoint or short form does not match its fields")
        if head.origin != self.address:
            raise AuditFailure(
                f"{what}: it is signed for {head.origin[:200]!r}, not for {self.address!r}"
            )
        return head

    def _misplaced(self, index: int, given: object) -> str:
        if type(given) is int and given > index:
            where = f"the entry after leaf {index - 1:,}" if index else "the first entry"
            return f"leaf {index:,} is missing or out of place: {where} is leaf {given:,}"
        if type(given) is int:
            return (
                f"leaf {index:,}: the entry in its place is leaf {given:,}: "
                "entries are repeated or out of order"
            )
        return f"leaf {index:,}: the entry in its place has no index (or is not a JSON object)"

    def _reached(self) -> None:
        """The leaves reached the size of a head, or of the saved head: compare."""
        size = self.frontier.size
        root = self.frontier.root() if size else merkle.EMPTY_ROOT
        position = self._next_head
        if position < len(self._sizes) and self._sizes[position] == size:
            expected = bytes(self._roots[32 * position : 32 * position + 32])
            if expected != root:
                raise AuditFailure(
                    f"head at size {size:,}: its root {size}:{expected.hex()[:SHORT_HEX]} is not "
                    f"the root of the leaves ({size}:{root.hex()[:SHORT_HEX]}): a leaf among "
                    f"leaves [{self._checked_size:,}, {size:,}) was changed, removed, added "
                    "or moved"
                )
            if self._counts[position] != self.count:
                raise AuditFailure(
                    f"head at size {size:,}: it says {self._counts[position]:,} signatures "
                    f"count, the leaves give {self.count:,}"
                )
            self._checked_size = size
            self._next_head += 1
        if self.since and self.since.size == size:
            if not self.since.matches(root):
                raise AuditFailure(
                    f"the saved head {self.since.short} does not match this log: its root at "
                    f"size {size:,} is {size}:{root.hex()[:SHORT_HEX]}: history was rewritten "
                    "since that head was saved"
                )
            self._since_root = root
        self._stop_at = self._next_stop()

    def _next_stop(self) -> int:
        size = self.frontier.size
        stops = [self._sizes[self._next_head]] if self._next_head < len(self._sizes) else []
        if self.since and self.since.size >= size and self._since_root is None:
            stops.append(self.since.size)
        stops = [stop for stop in stops if stop >= size]
        return min(stops) if stops else -1


# Reading the log ------------------------------------------------------------------------


class SiteSource:
    """The log as the site serves it, page by page."""

    def __init__(self, address: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout
        self._site = urllib.parse.urlsplit(address)

    def latest(self) -> dict:
        return self._get(f"{self.address}/log.json", MAX_SMALL_JSON)

    def count(self) -> dict:
        return self._get(f"{self.address}/count.json", MAX_SMALL_JSON)

    def heads(self, latest_size: int) -> Iterator[object]:
        url = f"{self.address}/log/heads.json"
        highest = -1
        while url:
            page = self._get(url, MAX_HEADS_PAGE)
            heads = page.get("heads")
            if not isinstance(heads, list):
                raise AuditError(f"{url}: the answer has no list of heads")
            for head in heads:
                size = head.get("size") if isinstance(head, dict) else None
                if type(size) is int and size > latest_size:
                    return  # signed since the audit began: for the next audit
                yield head
            sizes = [h["size"] for h in heads if isinstance(h, dict) and type(h.get("size")) is int]
            if not sizes or max(sizes) <= highest:
                return  # a page that does not go further: the checker names what is missing
            highest = max(sizes)
            url = self._next(page, url)

    def entries(self, latest_size: int) -> Iterator[object]:
        done = 0
        url = self._entries_url(0, latest_size)
        while done < latest_size:
            page = self._get(url, MAX_ENTRIES_PAGE)
            entries = page.get("entries")
            if not isinstance(entries, list):
                raise AuditError(f"{url}: the answer has no list of entries")
            if not entries:
                return  # the site has no more: the checker says which leaf is missing
            yield from entries[: latest_size - done]
            done += len(entries)
            url = self._next(page, url) or self._entries_url(done, latest_size)

    def consistency(self, first: int, second: int) -> list[bytes]:
        url = f"{self.address}/log/consistency.json?first={first}&second={second}"
        proof = self._get(url, MAX_SMALL_JSON).get("consistency")
        if not isinstance(proof, list) or not all(_is_hash_hex(h) for h in proof):
            raise AuditError(f"{url}: the answer has no consistency proof (a list of hashes)")
        return [bytes.fromhex(h) for h in proof]

    def _entries_url(self, start: int, latest_size: int) -> str:
        end = min(start + ENTRIES_PAGE, latest_size)
        return f"{self.address}/log/entries.json?start={start}&end={end}"

    def _next(self, page: dict, current: str) -> str | None:
        """The page's `next` link, kept on the audited site: only its path and query are
        used (behind a proxy a site may name itself by an inner address)."""
        link = page.get("next")
        if link is None:
            return None
        if not isinstance(link, str) or len(link) > 2000:
            raise AuditError(f"{current}: its link to the next page is malformed")
        target = urllib.parse.urlsplit(urllib.parse.urljoin(current, link))
        if not target.path.startswith(f"{self._site.path}/log/"):
            raise AuditError(f"{current}: its next page is outside this log ({link[:200]})")
        link = urllib.parse.urlunsplit(
            (self._site.scheme, self._site.netloc, target.path, target.query, "")
        )
        if link == current:
            raise AuditError(f"{current}: its next page is itself")
        return link

    def _get(self, url: str, limit: int) -> dict:
        request = urllib.request.Request(
            url,
            headers={
                "Accept": "application/json",
                "User-Agent": f"petitions-audit/{__version__} (+petitions audit)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(limit + 1)
        except urllib.error.HTTPError as error:
            raise AuditError(f"{url}: the site answered {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise AuditError(f"{url}: cannot reach the site: {error.reason}") from None
        except (OSError, HTTPException, ValueError) as error:
            raise AuditError(f"{url}: cannot read the answer: {error}") from None
        if len(body) > limit:
            raise AuditError(f"{url}: the answer is larger than {limit:,} bytes")
        return _json_object(body, url)


class SavedCopy:
    """A copy saved with --save: log.json, heads.json, entries.jsonl, count.json, source.txt."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise AuditError(f"{directory}: no such directory")
        self.directory = directory

    def source(self) -> str:
        return _read_text(self.directory / "source.txt", 4096).strip()

    def latest(self) -> dict:
        return self._json("log.json")

    def count(self) -> dict | None:
        return self._json("count.json") if (self.directory / "count.json").exists() else None

    def heads(self, latest_size: int) -> Iterator[object]:
        path = self.directory / "heads.json"
        # The whole list is parsed at once: a saved copy is the auditor's own file.
        heads = _json(_read_bytes(path, MAX_SAVED_HEADS), path)
        if not isinstance(heads, list):
            raise AuditError(f"{path}: not a JSON list of heads")
        yield from heads

    def entries(self, latest_size: int) -> Iterator[object]:
        path = self.directory / "entries.jsonl"
        decode = json.JSONDecoder().decode
        number = 0
        try:
            with path.open(encoding="utf-8") as lines:
                while line := lines.readline(MAX_ENTRY_LINE + 1):
                    number += 1
                    if len(line) > MAX_ENTRY_LINE:
                        raise AuditError(f"{path}, line {number:,}: longer than a leaf can be")
                    try:
                        entry = decode(line)
                    except ValueError:
                        raise AuditError(
                            f"{path}, line {number:,}: not JSON (is the file truncated?)"
                        ) from None
                    yield entry
        except UnicodeDecodeError:
            raise AuditError(f"{path}, after line {number:,}: not UTF-8 text") from None
        except OSError as error:
            raise AuditError(f"{path}: cannot read it: {error.strerror}") from None

    def consistency(self, first: int, second: int) -> None:
        return None  # offline: the recomputed tree is the proof

    def _json(self, name: str) -> dict:
        path = self.directory / name
        return _json_object(_read_bytes(path, MAX_SMALL_JSON), path)


class CopyWriter:
    """Writes a saved copy as the audit reads the log. Files are written under a
    temporary name and renamed at the end, so a copy is never half one audit's and
    half another's; an audit that could not be made leaves none."""

    NAMES = ("log.json", "count.json", "heads.json", "entries.jsonl", "source.txt")

    def __init__(self, directory: Path, address: str) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._files = {
                name: (directory / f".{name}.part").open("w", encoding="utf-8")
                for name in self.NAMES
            }
        except OSError as error:
            raise AuditError(f"{directory}: cannot write the copy there: {error}") from None
        self.directory = directory
        self._files["source.txt"].write(address + "\n")
        self._files["heads.json"].write("[")
        self._heads = 0

    def latest(self, raw: object) -> None:
        self._write("log.json", json.dumps(raw, indent=1) + "\n")

    def count(self, raw: object) -> None:
        self._write("count.json", json.dumps(raw) + "\n")

    def head(self, raw: object) -> None:
        self._write("heads.json", ("," if self._heads else "") + "\n" + json.dumps(raw))
        self._heads += 1

    def entry(self, raw: object) -> None:
        self._write("entries.jsonl", json.dumps(raw, separators=(",", ":")) + "\n")

    def commit(self) -> None:
        self._write("heads.json", "\n]\n")
        try:
            for name, file in self._files.items():
                file.close()
                os.replace(file.name, self.directory / name)
        except OSError as error:
            raise AuditError(f"{self.directory}: cannot write the copy: {error}") from None

    def discard(self) -> None:
        for file in self._files.values():
            file.close()
            Path(file.name).unlink(missing_ok=True)

    def _write(self, name: str, text: str) -> None:
        try:
            self._files[name].write(text)
        except OSError as error:
            raise AuditError(f"{self.directory}: cannot write the copy: {error}") from None


# The audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditOutcome:
    result: AuditResult | None  # None when it failed
    failure: str | None
    count_json: int | None  # count.json's count, when there is one


def audit(
    source: SiteSource | SavedCopy,
    address: str,
    since: SavedHead | None = None,
    writer: CopyWriter | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditOutcome:
    """Read the log from `source` and check it. With a writer, everything read is
    saved, even after a failure (it is the evidence)."""
    if since and since.head and since.head.origin != address:
        raise AuditError(f"the saved head is of another log: {since.head.origin[:200]}")
    checker = LogChecker(address, since)
    failure: AuditFailure | None = None

    def check(step: Callable[..., object], *raw: object) -> bool:
        """Run one check unless one already failed; False once there is no point reading on."""
        nonlocal failure
        if failure is None:
            try:
                step(*raw)
            except AuditFailure as error:
                failure = error
        return failure is None or writer is not None

    raw_latest = source.latest()
    raw_count = source.count()
    if writer:
        writer.latest(raw_latest)
        if raw_count is not None:
            writer.count(raw_count)
    if check(checker.start, raw_latest) and checker.latest:
        latest_size = checker.latest.size
        for raw in source.heads(latest_size):
            if writer:
                writer.head(raw)
            if not check(checker.add_head, raw):
                break
        check(checker.end_of_heads)
        entries = source.entries(latest_size) if failure is None or writer else ()
        for raw in entries:
            if writer:
                writer.entry(raw)
            if not check(checker.add, raw):
                break
            if progress and not checker.size & 0x3FFF:
                progress(checker.size, latest_size)
    result = None
    if failure is None:
        try:
            result = checker.finish()
            _check_consistency(source, checker)
        except AuditFailure as error:
            failure = error
    if writer:
        writer.commit()
    count = raw_count.get("count") if isinstance(raw_count, dict) else None
    return AuditOutcome(
        result if failure is None else None,
        str(failure) if failure else None,
        count if type(count) is int else None,
    )


def _check_consistency(source: SiteSource | SavedCopy, checker: LogChecker) -> None:
    """Online, also ask the site to prove the saved head is a prefix of the latest."""
    since, latest = checker.since, checker.latest
    if since is None or since.size == 0:
        return
    proof = source.consistency(since.size, latest.size)
    if proof is None:
        return
    if not merkle.verify_consistency(
        since.size, latest.size, checker.since_root, latest.root, proof
    ):
        raise AuditFailure(
            f"the saved head {since.short}: the site's consistency proof to the latest head "
            f"{latest.short} does not verify"
        )


def run_audit(
    url: str | None,
    save: Path | None = None,
    from_dir: Path | None = None,
    since_file: Path | None = None,
) -> int:
    """`petitions audit`: print what was checked; 0 when the log checks, 1 when it does not,
    2 when it could not be audited."""
    writer = None
    try:
        if from_dir is not None:
            if save is not None:
                raise AuditError("--save and --from together: the copy is saved already")
            source = SavedCopy(from_dir)
            address = petition_address(source.source())
            if url is not None and petition_address(url) != address:
                raise AuditError(f"{from_dir} is a copy of {address}, not of {url[:200]}")
        elif url is None:
            raise AuditError("give the petition's address (https://example.org/p/SLUG) or --from")
        else:
            address = petition_address(url)
            source = SiteSource(address)
        since = read_saved_head(since_file) if since_file is not None else None
        if save is not None:
            writer = CopyWriter(save, address)
        progress = _Progress() if sys.stderr.isatty() else None
        try:
            outcome = audit(source, address, since, writer, progress)
        finally:
            if progress:
                progress.clear()
    except BaseException as error:
        if writer:
            writer.discard()
        if not isinstance(error, AuditError):
            raise
        print(f"petitions audit: {error}", file=sys.stderr)
        return 2
    _report(outcome, save)
    return 0 if outcome.failure is None else 1


def _report(outcome: AuditOutcome, save: Path | None) -> None:
    if save is not None:
        print(f"saved a copy of what was read in {save}")
    if outcome.failure:
        print(f"FAILED: {outcome.failure}")
        return
    result = outcome.result
    keys = ", ".join(result.key_ids) or "none"
    print(f"petition: {result.address}")
    print(f"leaves: {result.size:,}")
    print(f"heads checked: {result.heads:,} (signed with key {keys})")
    print(f"count: {result.count:,}")
    if outcome.count_json is not None:
        print(f"count.json: {outcome.count_json:,} (it may be a little ahead of the latest head)")
    if result.since:
        print(f"since {result.since.short}: the log only grew")
    print("OK")


class _Progress:
    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // total if total else 100
        print(f"\r  checked {done:,} of {total:,} leaves ({percent}%)", end="", file=sys.stderr,
              flush=True)  # fmt: skip
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def _read_bytes(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise AuditError(f"{path}: cannot read it: {error.strerror}") from None
    if len(data) > limit:
        raise AuditError(f"{path}: larger than {limit:,} bytes")
    return data


def _read_text(path: Path, limit: int) -> str:
    try:
        return _read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not UTF-8 text") from None


def _json(data: bytes, where: object) -> object:
    try:
        return json.loads(data)
    except ValueError:  # also UnicodeDecodeError
        raise AuditError(f"{where}: not JSON (is it truncated?)") from None
    except RecursionError:
        raise AuditError(f"{where}: nested too deeply") from None


def _json_object(data: bytes, where: object) -> dict:
    value = _json(data, where)
    if not isinstance(value, dict):
        raise AuditError(f"{where}: not a JSON object")
    return value


def _is_hash_hex(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )

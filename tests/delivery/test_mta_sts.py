"""MTA-STS: record and policy parsing, MX matching, and discovery against real DNS and HTTPS servers.

The integration tests run nsd serving the zone ``sts.test`` and a threaded HTTPS server on
loopback whose answer depends on the policy host asked for: ``mta-sts.<label>.sts.test``. Its
certificates come from a test CA written to a file and trusted through ``ca_file``; the server
picks a certificate by SNI, so one host can present a certificate from another CA and one a
certificate for another name.
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from edgeward.delivery.mta_sts import (
    MAX_AGE_LIMIT,
    MemoryStsCache,
    MtaSts,
    SqliteStsCache,
    StsError,
    StsPolicy,
    parse_policy,
    parse_txt,
)
from edgeward.net.dns import DnsResolver
from edgeward.ports import MxHost
from edgeward.state import MIGRATIONS, StateStore, default_db_path
from edgeward.testing.clock import FakeClock
from tests.dnsserver import NSD, start_nsd
from tests.ports import free_port

POLICY_ID = "2026112801"
OLD_ID = "2025010101"
POLICY = "version: STSv1\nmode: enforce\nmx: mx1.example.sts.test\nmx: *.mx.sts.test\nmax_age: 86400\n"

# -- parse_txt ----------------------------------------------------------------------------------


def test_txt_id() -> None:
    assert parse_txt(["v=STSv1; id=2026112801;"]) == "2026112801"
    assert parse_txt(["v=STSv1;id=abc123"]) == "abc123"
    assert parse_txt(["v=STSv1 ; id=20160831085700Z ; ext=value; "]) == "20160831085700Z"


def test_txt_ignores_other_records() -> None:
    assert parse_txt(["v=spf1 -all", "v=STSv1; id=1;", "hello"]) == "1"


def test_txt_two_sts_records_mean_none() -> None:
    assert parse_txt(["v=STSv1; id=1;", "v=STSv1; id=2;"]) is None


def test_txt_no_sts_record() -> None:
    assert parse_txt([]) is None
    assert parse_txt(["v=spf1 -all"]) is None
    assert parse_txt(["v=STSv2; id=1;"]) is None


def test_txt_missing_id() -> None:
    assert parse_txt(["v=STSv1;"]) is None
    assert parse_txt(["v=STSv1; ext=1;"]) is None


@pytest.mark.parametrize(
    "record",
    [
        "v=STSv1; id=;",
        "v=STSv1; id=abc-def;",  # the id is letters and digits only
        "v=STSv1; id=" + "1" * 33 + ";",
        "v=STSv1; id=1;; x=2",
        "v=STSv1; id=1; garbage",
        "v=STSv1; id=1; x=a b",
        "v=STSv1; id=1; =2",
    ],
)
def test_txt_malformed(record: str) -> None:
    assert parse_txt([record]) is None


def test_txt_first_id_counts() -> None:
    assert parse_txt(["v=STSv1; id=1; id=2;"]) == "1"


# -- parse_policy -------------------------------------------------------------------------------


def test_policy_enforce_with_several_mx() -> None:
    text = (
        "version: STSv1\nmode: enforce\nmx: mail.Example.com\nmx: *.example.net\n"
        "mx: backup.example.org.\nmax_age: 604800\n"
    )
    assert parse_policy(text, "abc") == StsPolicy(
        "enforce", ("mail.example.com", "*.example.net", "backup.example.org"), 604800, "abc"
    )


def test_policy_testing_and_none() -> None:
    testing = parse_policy("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400", "1")
    assert (testing.mode, testing.mx, testing.max_age) == ("testing", ("mx.example.com",), 86400)
    none = parse_policy("version: STSv1\nmode: none\nmax_age: 0\n", "2")
    assert none == StsPolicy("none", (), 0, "2")


def test_policy_crlf_and_unknown_keys() -> None:
    text = (
        "version: STSv1\r\nmode: enforce\r\nfuture_key: anything at all\r\n"
        "mx: mx.example.com\r\nmax_age:86400\r\n"
    )
    assert parse_policy(text, "1") == StsPolicy("enforce", ("mx.example.com",), 86400, "1")


def test_policy_first_occurrence_of_a_key_counts() -> None:
    text = "version: STSv1\nmode: testing\nmode: enforce\nmx: mx.example.com\nmax_age: 60\nmax_age: 9\n"
    policy = parse_policy(text, "1")
    assert (policy.mode, policy.max_age) == ("testing", 60)


def test_policy_max_age_is_capped() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n", "1")
    assert policy.max_age == MAX_AGE_LIMIT == 31557600


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",  # no version
        "version: STSv1\nmx: mx.example.com\nmax_age: 86400\n",  # no mode
        "version: STSv1\nmode: enforce\nmx: mx.example.com\n",  # no max_age
        "version: STSv1\nmode: enforce\nmax_age: 86400\n",  # enforce without mx
        "version: STSv1\nmode: testing\nmax_age: 86400\n",  # testing without mx
        "version: STSv2\nmode: none\nmax_age: 86400\n",
        "version: STSv1\nmode: strict\nmx: mx.example.com\nmax_age: 86400\n",
        "version: STSv1\nmode: Enforce\nmx: mx.example.com\nmax_age: 86400\n",
        "version: STSv1\nmode: none\nmax_age: -1\n",
        "version: STSv1\nmode: none\nmax_age: 1e6\n",
        "version: STSv1\nmode: none\nmax_age: 12345678901\n",  # more than ten digits
        "version: STSv1\nmode: none\nmax_age:\n",
        "version: STSv1\nmode: enforce\nmx: mail.*.example.com\nmax_age: 86400\n",
        "version: STSv1\nmode: enforce\nmx: mx/evil\nmax_age: 86400\n",
        "version: STSv1\nmode: enforce\nmx:\nmax_age: 86400\n",
        "version: STSv1\nmode: none\nmax_age: 86400\njust some text\n",
        "<html><body>Not here</body></html>",
    ],
)
def test_policy_invalid(text: str) -> None:
    with pytest.raises(StsError):
        parse_policy(text, "1")


# -- matches ------------------------------------------------------------------------------------


def test_matches_exact_and_wildcard() -> None:
    policy = StsPolicy("enforce", ("mail.example.org", "*.example.com"), 86400, "1")
    assert policy.matches("mail.example.org")
    assert policy.matches("mx.example.com")
    assert not policy.matches("example.com")
    assert not policy.matches("a.b.example.com")
    assert not policy.matches("mx.example.com.evil.net")
    assert not policy.matches("other.example.org")
    assert not policy.matches("xmail.example.org")


def test_matches_ignores_case_and_final_dot() -> None:
    policy = StsPolicy("enforce", ("mail.example.org", "*.example.com"), 86400, "1")
    assert policy.matches("MAIL.Example.ORG.")
    assert policy.matches("Mx.EXAMPLE.com.")
    assert not policy.matches("")
    assert not policy.matches(".example.com")


# -- servers ------------------------------------------------------------------------------------

# Labels under sts.test whose policy host answers with the valid POLICY (Content-Length framing).
GOOD = ("a", "multi", "xn--bcher-kva", "otherca", "wrongname", "store", "notxt")
# Labels with a TXT record and a policy host that misbehaves or frames the body differently.
SPECIAL = (
    "failing",
    "redirect",
    "ctype",
    "big",
    "bigeof",
    "chunked",
    "eof",
    "garbage",
    "nonemode",
    "slow",
    "nohost",
    "two",
)


def zone() -> str:
    lines = [
        "$ORIGIN sts.test.",
        "$TTL 60",
        "@ IN SOA ns.sts.test. admin.sts.test. 1 3600 600 86400 60",
        "@ IN NS ns.sts.test.",
        "ns IN A 127.0.0.1",
    ]
    for label in GOOD + SPECIAL:
        if label != "notxt":
            lines.append(f'_mta-sts.{label} IN TXT "v=STSv1; id={POLICY_ID};"')
        if label == "multi":
            # Nothing listens on 127.0.0.2: the first address fails, the second answers.
            lines.append("mta-sts.multi IN A 127.0.0.2")
        if label != "nohost":
            lines.append(f"mta-sts.{label} IN A 127.0.0.1")
    lines.append('_mta-sts.two IN TXT "v=STSv1; id=1;"')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sts_nameserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    server = start_nsd(tmp_path_factory.mktemp("nsd-sts"), {"sts.test": zone()})
    try:
        yield server.port
    finally:
        server.stop()


class PolicyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PolicyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        self.server.record(host, self)
        label = host.removeprefix("mta-sts.").removesuffix(".sts.test")
        if self.path != "/.well-known/mta-sts.txt":
            self.answer(404, b"not found")
        elif label in GOOD:
            self.answer(200, POLICY.encode())
        elif label == "redirect":
            self.answer(301, b"", Location="https://mta-sts.a.sts.test/.well-known/mta-sts.txt")
        elif label == "ctype":
            self.answer(200, POLICY.encode(), content_type="text/html")
        elif label == "big":
            self.answer(200, POLICY.encode() + b"#" * 70_000)
        elif label == "bigeof":
            self.to_eof(POLICY.encode() + b"x: " + b"y" * 70_000 + b"\n")
        elif label == "chunked":
            self.chunked(POLICY.encode())
        elif label == "eof":
            self.to_eof(POLICY.encode())
        elif label == "garbage":
            self.answer(200, b"hello, world\n")
        elif label == "nonemode":
            self.answer(200, b"version: STSv1\nmode: none\nmax_age: 86400\n")
        elif label == "slow":
            self.server.release.wait(60)
            self.close_connection = True
        else:
            self.answer(500, b"internal error")

    def answer(self, status: int, body: bytes, content_type: str = "text/plain", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def to_eof(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def chunked(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "Text/Plain; charset=UTF-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 17):
            piece = body[start : start + 17]
            self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")


class PolicyServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", port), PolicyHandler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def record(self, host: str, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.hits[host] += 1
            self.requests.append((handler.command, handler.path, dict(handler.headers.items())))


@dataclass
class Lab:
    dns_port: int
    https_port: int
    ca_file: Path
    server: PolicyServer
    clock: FakeClock = field(default_factory=lambda: FakeClock())

    def resolver(self) -> RecordingResolver:
        return RecordingResolver(DnsResolver(["127.0.0.1"], port=self.dns_port, timeout=2.0))

    def sts(
        self,
        cache: MemoryStsCache | SqliteStsCache | None = None,
        *,
        resolver: RecordingResolver | None = None,
        **kw: float,
    ) -> MtaSts:
        return MtaSts(
            resolver or self.resolver(),
            cache if cache is not None else MemoryStsCache(),
            https_port=self.https_port,
            ca_file=self.ca_file,
            clock=self.clock,
            **kw,
        )

    def hits(self, label: str) -> int:
        return self.server.hits[f"mta-sts.{label}.sts.test"]


class RecordingResolver:
    """The real resolver, noting every name asked for."""

    def __init__(self, inner: DnsResolver) -> None:
        self.inner = inner
        self.asked: list[str] = []

    async def mx(self, domain: str) -> Sequence[MxHost]:
        self.asked.append(domain)
        return await self.inner.mx(domain)

    async def addresses(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        return await self.inner.addresses(host)

    async def ptr(self, ip: str) -> Sequence[str]:
        self.asked.append(ip)
        return await self.inner.ptr(ip)

    async def txt(self, name: str) -> Sequence[str]:
        self.asked.append(name)
        return await self.inner.txt(name)


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolicyServer, Path]]:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("sts-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    names = [f"mta-sts.{label}.sts.test" for label in GOOD + SPECIAL]
    contexts: dict[str, ssl.SSLContext] = {}
    for name, cert in (
        ("mta-sts.otherca.sts.test", trustme.CA().issue_cert("mta-sts.otherca.sts.test")),
        ("mta-sts.wrongname.sts.test", ca.issue_cert("mta-sts.elsewhere.sts.test")),
    ):
        contexts[name] = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(contexts[name])
    default = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(default)

    def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if name in contexts:
            sock.context = contexts[name]

    default.sni_callback = choose
    server = PolicyServer(free_port(), default)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server, ca_file
    finally:
        server.release.set()
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def lab(sts_nameserver: int, policy_server: tuple[PolicyServer, Path]) -> Lab:
    server, ca_file = policy_server
    return Lab(sts_nameserver, server.server_address[1], ca_file, server)


EXPECTED = StsPolicy("enforce", ("mx1.example.sts.test", "*.mx.sts.test"), 86400, POLICY_ID)


# -- discovery and caching ----------------------------------------------------------------------


async def test_policy_is_fetched_then_served_from_the_cache(lab: Lab) -> None:
    sts = lab.sts()
    before = lab.hits("a")
    assert await sts.policy("a.sts.test") == EXPECTED
    assert lab.hits("a") == before + 1
    method, path, headers = lab.server.requests[-1]
    assert (method, path) == ("GET", "/.well-known/mta-sts.txt")
    assert headers["Host"] == f"mta-sts.a.sts.test:{lab.https_port}"
    assert headers["User-Agent"] == "Edgeward"
    assert headers["Connection"] == "close"
    # The same domain in another spelling, later but within max_age: no second fetch.
    lab.clock.advance(86_000)
    assert await sts.policy("A.STS.Test.") == EXPECTED
    assert lab.hits("a") == before + 1


async def test_expired_policy_is_fetched_again(lab: Lab) -> None:
    sts = lab.sts()
    before = lab.hits("a")
    await sts.policy("a.sts.test")
    lab.clock.advance(86_400)
    assert await sts.policy("a.sts.test") == EXPECTED
    assert lab.hits("a") == before + 2


async def test_changed_txt_id_triggers_a_fetch(lab: Lab) -> None:
    cache = MemoryStsCache()
    old = StsPolicy("testing", ("old.example.sts.test",), 86400, OLD_ID)
    cache.put("a.sts.test", old, lab.clock.now() - 60)
    before = lab.hits("a")
    assert await lab.sts(cache).policy("a.sts.test") == EXPECTED
    assert lab.hits("a") == before + 1
    assert cache.get("a.sts.test") == (EXPECTED, lab.clock.now())


async def test_failed_fetch_keeps_the_unexpired_cached_policy(lab: Lab) -> None:
    cache = MemoryStsCache()
    old = StsPolicy("enforce", ("mx.failing.sts.test",), 86400, OLD_ID)
    cache.put("failing.sts.test", old, lab.clock.now() - 60)
    sts = lab.sts(cache)
    before = lab.hits("failing")
    assert await sts.policy("failing.sts.test") == old
    assert lab.hits("failing") == before + 1
    assert cache.get("failing.sts.test") == (old, lab.clock.now() - 60)


async def test_expired_cache_and_failed_fetch_mean_no_policy(lab: Lab) -> None:
    cache = MemoryStsCache()
    old = StsPolicy("enforce", ("mx.failing.sts.test",), 86400, OLD_ID)
    cache.put("failing.sts.test", old, lab.clock.now() - 86_400)
    assert await lab.sts(cache).policy("failing.sts.test") is None


async def test_failed_fetch_is_not_retried_for_five_minutes(lab: Lab) -> None:
    sts = lab.sts()
    before = lab.hits("failing")
    assert await sts.policy("failing.sts.test") is None
    lab.clock.advance(299)
    assert await sts.policy("failing.sts.test") is None
    assert lab.hits("failing") == before + 1
    lab.clock.advance(1)
    assert await sts.policy("failing.sts.test") is None
    assert lab.hits("failing") == before + 2


async def test_no_txt_record_means_no_policy(lab: Lab) -> None:
    assert await lab.sts().policy("notxt.sts.test") is None
    assert await lab.sts().policy("nothing-here.sts.test") is None  # NXDOMAIN
    assert lab.hits("notxt") == 0


async def test_no_txt_record_keeps_the_unexpired_cached_policy(lab: Lab) -> None:
    cache = MemoryStsCache()
    cache.put("notxt.sts.test", EXPECTED, lab.clock.now())
    sts = lab.sts(cache)
    assert await sts.policy("notxt.sts.test") == EXPECTED
    lab.clock.advance(86_400)
    assert await sts.policy("notxt.sts.test") is None
    assert lab.hits("notxt") == 0


async def test_two_sts_records_mean_no_policy(lab: Lab) -> None:
    assert await lab.sts().policy("two.sts.test") is None
    assert lab.hits("two") == 0


async def test_mode_none_is_returned_as_it_is(lab: Lab) -> None:
    assert await lab.sts().policy("nonemode.sts.test") == StsPolicy("none", (), 86400, POLICY_ID)


async def test_unreachable_address_is_skipped(lab: Lab) -> None:
    assert await lab.sts().policy("multi.sts.test") == EXPECTED


async def test_policy_host_without_address(lab: Lab) -> None:
    assert await lab.sts().policy("nohost.sts.test") is None


async def test_international_domain_is_idna_encoded(lab: Lab) -> None:
    resolver = lab.resolver()
    assert await lab.sts(resolver=resolver).policy("Bücher.sts.test") == EXPECTED
    assert resolver.asked[0] == "_mta-sts.xn--bcher-kva.sts.test"


@pytest.mark.parametrize(
    "domain",
    [
        "",
        ".",
        "a/b.sts.test",
        "a b.sts.test",
        "a.sts.test/x",
        "-a.sts.test",
        "a..sts.test",
        "127.0.0.1",
        "[127.0.0.1]",
        "a.sts.test:443",
        "x" * 64 + ".sts.test",
        "a.sts.test?",
        "a.sts.test\r\nX: y",
    ],
)
async def test_invalid_domain_never_reaches_dns(lab: Lab, domain: str) -> None:
    resolver = lab.resolver()
    assert await lab.sts(resolver=resolver).policy(domain) is None
    assert resolver.asked == []


# -- what a policy host may answer --------------------------------------------------------------


async def test_redirect_is_not_followed(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    before = lab.hits("redirect"), lab.hits("a")
    assert await lab.sts().policy("redirect.sts.test") is None
    assert "HTTP status '301" in caplog.text
    assert (lab.hits("redirect"), lab.hits("a")) == (before[0] + 1, before[1])


async def test_wrong_content_type_is_refused(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    assert await lab.sts().policy("ctype.sts.test") is None
    assert "served as text/html" in caplog.text


async def test_body_over_64_kib_is_refused(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    assert await lab.sts().policy("big.sts.test") is None
    assert "response of 70087 bytes is larger than 65536" in caplog.text
    caplog.clear()
    assert await lab.sts().policy("bigeof.sts.test") is None
    assert "response larger than 65536 bytes" in caplog.text


async def test_invalid_policy_is_refused(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    assert await lab.sts().policy("garbage.sts.test") is None
    assert "policy line without a key" in caplog.text


async def test_chunked_body_is_accepted(lab: Lab) -> None:
    assert await lab.sts().policy("chunked.sts.test") == EXPECTED


async def test_body_to_end_of_stream_is_accepted(lab: Lab) -> None:
    assert await lab.sts().policy("eof.sts.test") == EXPECTED


async def test_certificate_from_another_ca_is_refused(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    assert await lab.sts().policy("otherca.sts.test") is None
    assert lab.hits("otherca") == 0
    assert "certificate verify failed" in caplog.text
    assert "Hostname mismatch" not in caplog.text


async def test_certificate_for_another_name_is_refused(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    assert await lab.sts().policy("wrongname.sts.test") is None
    assert lab.hits("wrongname") == 0
    assert "Hostname mismatch" in caplog.text


async def test_system_trust_store_does_not_know_the_test_ca(lab: Lab) -> None:
    sts = MtaSts(lab.resolver(), MemoryStsCache(), https_port=lab.https_port, clock=lab.clock)
    assert await sts.policy("a.sts.test") is None


async def test_stalled_policy_host_times_out(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    try:
        assert await lab.sts(timeout=0.5).policy("slow.sts.test") is None
        assert "no answer in 0.5 s" in caplog.text
    finally:
        lab.server.release.set()


def test_unreadable_ca_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StsError):
        MtaSts(DnsResolver(["127.0.0.1"]), MemoryStsCache(), ca_file=tmp_path / "missing.pem")


# -- the SQLite cache ---------------------------------------------------------------------------


async def test_sqlite_cache_survives_reopening_the_store(lab: Lab, tmp_path: Path) -> None:
    path = default_db_path(tmp_path)
    with StateStore(path) as store:
        assert store.schema_version() == len(MIGRATIONS)
        cache = SqliteStsCache(store)
        assert cache.get("store.sts.test") is None
        before = lab.hits("store")
        assert await lab.sts(cache).policy("store.sts.test") == EXPECTED
        assert lab.hits("store") == before + 1
    with StateStore(path) as store:
        cache = SqliteStsCache(store)
        assert cache.get("store.sts.test") == (EXPECTED, lab.clock.now())
        assert await lab.sts(cache).policy("store.sts.test") == EXPECTED
        assert lab.hits("store") == before + 1
        newer = StsPolicy("testing", ("a.example", "*.b.example"), 60, "2")
        cache.put("store.sts.test", newer, 5.0)
        assert cache.get("store.sts.test") == (newer, 5.0)
        cache.put("none.example", StsPolicy("none", (), 0, "x"), 6.0)
        assert cache.get("none.example") == (StsPolicy("none", (), 0, "x"), 6.0)

"""Features that do not date: structure, bulk-mail conventions, DKIM alignment, URLs, headers."""

from __future__ import annotations

from edgeward.content.analyze import analyze


def _features(headers: str, body: str, ctype: str = "text/html") -> set[str]:
    head = f"From: Shop <news@mail.shop.example>\r\nSubject: hello\r\nContent-Type: {ctype}\r\n"
    raw = f"{head}{headers}\r\n{body}"
    return set(analyze(raw.encode()).features)


def test_bulk_conventions_and_aligned_dkim() -> None:
    feats = _features(
        "List-Unsubscribe: <https://shop.example/u/1>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "Feedback-ID: 1:campaign:esp\r\n"
        "Precedence: bulk\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=shop.example; s=k1; b=abc\r\n",
        "<p>Your receipt</p>",
    )
    assert {
        "k:list_unsubscribe",
        "k:one_click_unsubscribe",
        "k:feedback_id",
        "k:precedence:bulk",
        "k:dkim_signature",
        "k:dkim_aligned",
    } <= feats
    assert "k:dkim_unaligned" not in feats


def test_unaligned_dkim_and_no_bulk_headers() -> None:
    feats = _features("DKIM-Signature: v=1; d=esp-bulk.example; s=x; b=abc\r\n", "<p>hi</p>")
    assert "k:dkim_unaligned" in feats
    assert not {f for f in feats if f.startswith(("k:list", "k:feedback", "k:one_click"))}


def test_client_sent_authentication_results_are_ignored() -> None:
    feats = _features("Authentication-Results: mx.example; spf=pass; dkim=pass; dmarc=pass\r\n", "<p>x</p>")
    assert not {f for f in feats if f.startswith("x:auth:")}


def test_html_structure_tells() -> None:
    pixel = '<img src="https://t.example/o.gif" width="1" height="1">'
    feats = _features("", f'<html><body><img src="https://shop.example/banner.png">{pixel}</body></html>')
    assert {"h:tracking_pixel", "h:images_only", "h:html_only", "h:text_ratio:0"} <= feats
    wordy = _features("", "<p>" + "a plain hand written note with words " * 20 + "</p>")
    assert "h:images_only" not in wordy and "h:tracking_pixel" not in wordy
    assert "h:text_ratio:5" in wordy


def test_url_tells() -> None:
    links = " ".join(f"https://site{i}.example/p" for i in range(9))
    feats = _features("", f"see https://bit.ly/x and http://xn--pypal-4ve.com/ {links}", "text/plain")
    assert {"u:shortener", "u:punycode", "u:domains:4"} <= feats


def test_header_consistency() -> None:
    raw = (
        b'From: "support@bank.example" <alerts@mailer.other.example>\r\n'
        b"Reply-To: agent@gmail.com\r\nSubject: hi\r\n\r\nhello"
    )
    feats = set(analyze(raw).features)
    assert {
        "x:display_address_other_domain",
        "x:reply_to_other_domain",
        "x:reply_to_freemail_company_from",
    } <= feats
    same = set(
        analyze(
            b'From: "news@shop.example" <news@shop.example>\r\nReply-To: a@shop.example\r\n\r\nx'
        ).features
    )
    assert not {f for f in same if "other_domain" in f or "freemail" in f}

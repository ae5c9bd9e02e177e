"""Join tokens: hashing, verification, the token book, and ``huishang token`` (issue_token)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from signalling.model import SiteId
from web.config import ConfigError, HuishangConfig, load_config
from web.store import Store
from web.token_command import UnknownSiteError, issue_token
from web.tokens import MAX_TOKEN_CHARS, TokenBook, hash_token, new_token, parse_hash, verify


def test_new_tokens_are_random_and_urlsafe() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert len(token) == 22  # 16 bytes, base64url without padding
        assert all(c.isalnum() or c in "-_" for c in token)


def test_hash_format_and_verify() -> None:
    stored = hash_token("s3cret-token")
    scheme, salt_hex, digest_hex = stored.split("$")
    assert scheme == "sha256"
    assert len(bytes.fromhex(salt_hex)) == 16
    assert digest_hex == hashlib.sha256(bytes.fromhex(salt_hex) + b"s3cret-token").hexdigest()
    assert verify("s3cret-token", stored)
    assert not verify("s3cret-tokeN", stored)
    assert not verify("", stored)


def test_salt_makes_hashes_differ() -> None:
    assert hash_token("same") != hash_token("same")
    assert hash_token("same", salt=b"\x01" * 16) == hash_token("same", salt=b"\x01" * 16)


def test_chinese_token_is_utf8() -> None:
    stored = hash_token("令牌", salt=b"salt")
    assert stored.endswith(hashlib.sha256(b"salt" + "令牌".encode()).hexdigest())
    assert verify("令牌", stored)


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("plaintext", "expected"),
        ("md5$00$00", "unknown hash scheme"),
        ("sha256$zz$" + "00" * 32, "hexadecimal"),
        ("sha256$$" + "00" * 32, "empty salt"),
        ("sha256$00$0000", "32 bytes"),
        ("sha256$00$" + "00" * 32 + "$x", "expected"),
    ],
)
def test_malformed_hashes(stored: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_hash(stored)
    assert not verify("anything", stored)


def test_overlong_token_refused() -> None:
    token = "x" * (MAX_TOKEN_CHARS + 1)
    stored = hash_token(token)
    assert not verify(token, stored)
    assert TokenBook({SiteId("a"): stored}).lookup(token) is None


def test_token_book() -> None:
    tokens = {SiteId(f"site{i}"): new_token() for i in range(300)}
    book = TokenBook({site: hash_token(token) for site, token in tokens.items()})
    assert len(book) == 300
    for site, token in list(tokens.items())[::37]:
        assert book.lookup(token) == site
    assert book.lookup(new_token()) is None
    assert book.lookup("") is None
    book.remove(SiteId("site0"))
    assert book.lookup(tokens[SiteId("site0")]) is None
    assert SiteId("site0") not in book
    with pytest.raises(ValueError):
        book.set(SiteId("x"), "bad")


def test_token_book_merged_overrides() -> None:
    old, new, stray = new_token(), new_token(), new_token()
    configured = {SiteId("a"): hash_token(old), SiteId("b"): hash_token(new_token())}
    overrides = {"a": hash_token(new), "gone": hash_token(stray)}
    book = TokenBook.merged(configured, overrides, known={SiteId("a"), SiteId("b")})
    assert book.lookup(new) == "a"
    assert book.lookup(old) is None  # the issued token replaced the configured one
    assert book.lookup(stray) is None  # a site no longer in the directory
    assert TokenBook.merged(configured, overrides).lookup(stray) == "gone"


# -- issue_token ----------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> HuishangConfig:
    (tmp_path / "huishang.toml").write_text('data_dir = "state"\n', encoding="utf-8")
    (tmp_path / "sites.toml").write_text(
        '[[sites]]\nid = "tianhe"\nname = "天河区应急指挥中心"\nrole = "chair"\n'
        f'level = "district"\ntoken_hash = "{hash_token("configured-token")}"\n'
        '[[sites]]\nid = "tianhe.zhuji"\nname = "珠吉街"\nrole = "terminal"\nlevel = "street"\n'
        'parent = "tianhe"\n',
        encoding="utf-8",
    )
    return load_config(tmp_path / "huishang.toml")


def test_issue_token(config: HuishangConfig) -> None:
    first = issue_token(config, "tianhe.zhuji")
    with Store.in_data_dir(config.data_dir) as store:
        book = TokenBook.merged(config.token_hashes, store.token_hashes())
    assert book.lookup(first) == "tianhe.zhuji"

    second = issue_token(config, "tianhe.zhuji")
    chair = issue_token(config, "tianhe")
    with Store.in_data_dir(config.data_dir) as store:
        book = TokenBook.merged(config.token_hashes, store.token_hashes())
    assert book.lookup(second) == "tianhe.zhuji"
    assert book.lookup(first) is None
    assert book.lookup(chair) == "tianhe"
    assert book.lookup("configured-token") is None
    assert len({first, second, chair}) == 3


def test_issue_token_unknown_site(config: HuishangConfig) -> None:
    with pytest.raises(UnknownSiteError) as info:
        issue_token(config, "tianhe.zuji")
    error = info.value
    assert isinstance(error, ConfigError) and isinstance(error, LookupError)
    assert error.near[0] == "tianhe.zhuji"
    assert "no site 'tianhe.zuji'; did you mean tianhe.zhuji" in str(error)
    assert "sites.toml" in str(error)
    assert not (config.data_dir / "huishang.sqlite3").exists()

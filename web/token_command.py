"""``huishang token SITE``: issue a site's join token (ARCHITECTURE.md, web/: the CLI).

The new token's salted hash goes into the store in the data directory, where it overrides the
``token_hash`` of ``sites.toml`` (and any token issued before); the plain token is returned
once, to be handed to the site, and is never stored or logged.

A server that is already running reads the store's tokens when it builds its
:class:`~web.tokens.TokenBook`; it sees a token issued later only if it reloads them.
"""

from __future__ import annotations

import logging
import time

from web.config import HuishangConfig, near_matches
from web.config_reader import ConfigError
from web.store import Store
from web.tokens import hash_token, new_token

__all__ = ["UnknownSiteError", "issue_token"]

logger = logging.getLogger(__name__)


class UnknownSiteError(ConfigError, LookupError):
    """The site id is not in the site directory; ``near`` holds ids that look like it."""

    def __init__(self, config: HuishangConfig, site_id: str) -> None:
        self.site_id = site_id
        self.near = near_matches(site_id, list(config.site_ids), n=5)
        hint = f"; did you mean {', '.join(self.near)}?" if self.near else ""
        super().__init__(config.sites_path, None, f"no site {site_id!r}{hint}")


def issue_token(config: HuishangConfig, site_id: str) -> str:
    """Make a new token for *site_id*, store its hash (replacing the old one), return it."""
    if site_id not in config.site_ids:
        raise UnknownSiteError(config, site_id)
    token = new_token()
    with Store.in_data_dir(config.data_dir) as store:
        store.set_token_hash(site_id, hash_token(token), time.time())
    logger.info("issued a new token for site %s (stored in %s)", site_id, config.data_dir)
    return token

"""Huishang's composition root: aiohttp pages and API, configuration loading, the CLI."""

"""Ingest: fetch feeds politely (``http``, ``guard``), parse each kind (``sources/``),
merge one paper across feeds and versions (``merge``), one feed at a time (``run``)."""

from digest.ingest.feeds import (
    add_feed,
    check_feed,
    count_enabled,
    default_feed_name,
    get_feed,
    list_feeds,
    remove_feed,
    validate_feed_url,
)
from digest.ingest.merge import MergeCounts, NewPapersHook, merge_records
from digest.ingest.papers import list_papers
from digest.ingest.run import FeedOutcome, fetch_feed, ingest_all, ingest_body, ingest_one

__all__ = [
    "FeedOutcome",
    "MergeCounts",
    "NewPapersHook",
    "add_feed",
    "check_feed",
    "count_enabled",
    "default_feed_name",
    "fetch_feed",
    "get_feed",
    "ingest_all",
    "ingest_body",
    "ingest_one",
    "list_feeds",
    "list_papers",
    "merge_records",
    "remove_feed",
    "validate_feed_url",
]

"""Ingest: fetch feeds politely (``http``, ``guard``), parse each kind (``sources/``),
merge one paper across feeds and versions (``merge``), one feed at a time (``run``)."""

from digest.ingest.feeds import (
    BUILT_IN_TAGS,
    Renamed,
    add_feed,
    check_feed,
    count_enabled,
    default_feed_name,
    get_feed,
    list_feeds,
    new_source_tag,
    remove_feed,
    rename_feed,
    validate_feed_name,
    validate_feed_url,
    validate_source_tag,
)
from digest.ingest.merge import MergeCounts, NewPapersHook, merge_records
from digest.ingest.papers import FieldSource, field_sources, get_paper, list_papers
from digest.ingest.run import FeedOutcome, fetch_feed, ingest_all, ingest_body, ingest_one

__all__ = [
    "BUILT_IN_TAGS",
    "FeedOutcome",
    "FieldSource",
    "MergeCounts",
    "NewPapersHook",
    "Renamed",
    "add_feed",
    "check_feed",
    "count_enabled",
    "default_feed_name",
    "fetch_feed",
    "field_sources",
    "get_feed",
    "get_paper",
    "ingest_all",
    "ingest_body",
    "ingest_one",
    "list_feeds",
    "list_papers",
    "merge_records",
    "new_source_tag",
    "remove_feed",
    "rename_feed",
    "validate_feed_name",
    "validate_feed_url",
    "validate_source_tag",
]

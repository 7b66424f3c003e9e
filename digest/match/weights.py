"""How much each kind of evidence adds to a paper's score for a topic.

A word in the title counts 3, in the abstract 1 (1.5 when it recurs); a phrase or
hyphenated compound counts 1.5x; words the reader wrote side by side that also
stand side by side in the paper add a proximity bonus; Hugging Face upvotes add
``0.4 * ln(1 + upvotes)``; a paper matching further topics of the same reader
gains a little per topic.
"""

TITLE_WEIGHT = 3.0
ABSTRACT_WEIGHT = 1.0
RECURRING_BONUS = 0.5  # the abstract mentions the term more than once
PHRASE_FACTOR = 1.5
PROXIMITY_TITLE = 2.0
PROXIMITY_ABSTRACT = 1.0
UPVOTE_FACTOR = 0.4
EXTRA_TOPIC_BONUS = 0.5  # per further topic a paper also matches
SEMANTIC_WEIGHT = 6.0  # x cosine similarity

"""Build the bundled sample feeds and the well-formed feed fixtures from the seed papers.

    .venv/bin/python -m tests.tools.make_sample_feeds

Writes (deterministically; the output is committed):

- ``tests/data/seed_ids.json``: title -> the arXiv id we assigned to each seed paper
- ``digest/cli/sample_data/arxiv_rss_cs.xml``, ``hf_daily.json``, ``arxiv_api.xml``: the
  demo's feeds, one day of cs.AI+cs.LG+cs.CL+cs.CR plus that day's HF Daily Papers
- ``tests/fixtures/feeds/arxiv_rss_cs_lg.xml``, ``arxiv_api_query.xml``,
  ``hf_daily.json``: small fixtures in each arXiv/HF format, sharing papers across
  formats (see tests/fixtures/feeds/README.md; the generic-RSS and hostile fixtures
  there are written by hand)

The seed titles and abstracts are real (Hugging Face Daily Papers); the arXiv ids,
authors, categories and dates are invented but shaped like the real thing.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "data" / "seed_papers.json"
SAMPLE_DIR = ROOT / "digest" / "cli" / "sample_data"
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "feeds"

DAY = datetime(2025, 7, 15, tzinfo=UTC)  # a Tuesday: arXiv announces at 00:00 US/Eastern

FIRST_NAMES = [
    "Wei",
    "María",
    "Oluwaseun",
    "Anna",
    "Rahul",
    "Sofia",
    "Hiroshi",
    "Chloé",
    "Mehmet",
    "Zoë",
    "Łukasz",
    "Priya",
    "Jonas",
    "Ana",
    "Dmitri",
    "Yuki",
    "Fatima",
    "Liam",
    "Jiahao",
    "Ingrid",
    "Tomás",
    "Nadia",
    "Kwame",
    "Elif",
    "Mateo",
    "Sun-hee",
]
LAST_NAMES = [
    "Zhang",
    "García",
    "Adeyemi",
    "Müller",
    "Sharma",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Yılmaz",
    "Nguyen",
    "Kowalski",
    "Iyer",
    "Berg",
    "Silva",
    "Ivanov",
    "Sato",
    "Haddad",
    "O'Brien",
    "Chen",
    "Johansson",
    "Fernández",
    "Petrova",
    "Mensah",
    "Kaya",
    "López",
    "Park",
]


def arxiv_id_for(index: int) -> str:
    # Spread over 2507.1xxxx so ids look like a real month's numbering, stable per index.
    return f"2507.{10101 + index * 163:05d}"


def categories_for(title: str, abstract: str) -> list[str]:
    text = f"{title} {abstract}".lower()
    cats: list[str] = []

    def add(cat: str) -> None:
        if cat not in cats:
            cats.append(cat)

    if any(
        w in text
        for w in ("backdoor", "poison", "attack", "privacy", "security", "jailbreak", "red-team")
    ):
        add("cs.CR")
    if any(w in text for w in ("language model", "llm", "text", "conversational", "prompt")):
        add("cs.CL")
    if any(w in text for w in ("vision", "image", "diffusion", "visual", "trajectory", "driving")):
        add("cs.CV")
    if any(
        w in text
        for w in ("probabilistic", "statistic", "causal", "minimax", "provable", "pretraining")
    ):
        add("stat.ML")
    if any(w in text for w in ("safety", "alignment", "agent", "risk", "trustworthy")):
        add("cs.AI")
    add("cs.LG")
    return cats[:3]


def authors_for(index: int) -> list[str]:
    rng = random.Random(index * 7919)
    count = rng.choice([1, 2, 3, 3, 4, 5, 6, 8])
    names: list[str] = []
    while len(names) < count:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in names:
            names.append(name)
    return names


def hex_id(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:24]


def load_seed() -> list[dict[str, object]]:
    papers = json.loads(SEED.read_text(encoding="utf-8"))
    out = []
    for index, paper in enumerate(papers):
        title, abstract = str(paper["title"]), str(paper["abstract"])
        out.append(
            {
                "index": index,
                "id": arxiv_id_for(index),
                "title": title,
                "abstract": abstract,
                "authors": authors_for(index),
                "categories": categories_for(title, abstract),
            }
        )
    return out


# --- arXiv RSS -----------------------------------------------------------------------


def rss_date(dt: datetime) -> str:
    # arXiv stamps a listing with midnight US/Eastern of the announcement day.
    return dt.strftime("%a, %d %b %Y 00:00:00 -0400")


def rss_item(
    paper: dict,
    announce: str,
    version: int,
    *,
    title: str | None = None,
    abstract: str | None = None,
    doi: str | None = None,
    categories: list[str] | None = None,
) -> str:
    pid = paper["id"]
    cats = categories or paper["categories"]
    lines = [
        "    <item>",
        f"      <title>{escape(title or paper['title'])}</title>",
        f"      <link>https://arxiv.org/abs/{pid}</link>",
        f"      <description>arXiv:{pid}v{version} Announce Type: {announce} \n"
        f"Abstract: {escape(abstract or paper['abstract'])}</description>",
        f'      <guid isPermaLink="false">oai:arXiv.org:{pid}v{version}</guid>',
        *[f"      <category>{escape(c)}</category>" for c in cats],
        f"      <pubDate>{rss_date(DAY)}</pubDate>",
        f"      <arxiv:announce_type>{announce}</arxiv:announce_type>",
        "      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>",
        f"      <dc:creator>{escape(', '.join(paper['authors']))}</dc:creator>",
    ]
    if doi:
        lines.append(f"      <arxiv:DOI>{escape(doi)}</arxiv:DOI>")
    lines.append("    </item>")
    return "\n".join(lines)


def atom_entry(
    paper: dict, announce: str, version: int, *, categories: list[str] | None = None
) -> str:
    """One entry of arXiv's Atom listing (https://rss.arxiv.org/atom/cs.LG)."""
    pid = paper["id"]
    return "\n".join(
        [
            "  <entry>",
            f"    <id>oai:arXiv.org:{pid}v{version}</id>",
            f"    <title>{escape(paper['title'])}</title>",
            f"    <updated>{DAY.strftime('%Y-%m-%dT04:00:00.000Z')}</updated>",
            f'    <link href="https://arxiv.org/abs/{pid}" rel="alternate" type="text/html"/>',
            f"    <summary>arXiv:{pid}v{version} Announce Type: {announce} \n"
            f"Abstract: {escape(paper['abstract'])}</summary>",
            *[
                f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>'
                for c in categories or paper["categories"]
            ],
            f"    <published>{DAY.strftime('%Y-%m-%dT00:00:00-04:00')}</published>",
            f"    <arxiv:announce_type>{announce}</arxiv:announce_type>",
            "    <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>",
            *[
                f"    <author>\n      <name>{escape(a)}</name>\n    </author>"
                for a in paper["authors"]
            ],
            "  </entry>",
        ]
    )


def atom_document(feed: str, entries: list[str]) -> str:
    return "\n".join(
        [
            "<?xml version='1.0' encoding='UTF-8'?>",
            '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xml:lang="en-us">',
            f"  <id>http://rss.arxiv.org/atom/{feed}</id>",
            f"  <title>{escape(feed)} updates on arXiv.org</title>",
            f"  <updated>{DAY.strftime('%Y-%m-%dT04:00:00.000Z')}</updated>",
            f'  <link href="https://rss.arxiv.org/atom/{feed}" rel="self" type="application/atom+xml"/>',
            f"  <subtitle>{escape(feed)} updates on the arXiv.org e-print archive.</subtitle>",
            *entries,
            "</feed>",
            "",
        ]
    )


def rss_document(feed: str, items: list[str]) -> str:
    return "\n".join(
        [
            "<?xml version='1.0' encoding='UTF-8'?>",
            '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            'version="2.0">',
            "  <channel>",
            f"    <title>{escape(feed.replace('+', ', '))} updates on arXiv.org</title>",
            f"    <link>http://rss.arxiv.org/rss/{feed}</link>",
            f"    <description>{escape(feed.replace('+', ', '))} updates on the arXiv.org e-print archive.</description>",
            f'    <atom:link href="https://rss.arxiv.org/atom/{feed}" rel="self" type="application/rss+xml"/>',
            "    <docs>http://www.rssboard.org/rss-specification</docs>",
            "    <language>en-us</language>",
            f"    <lastBuildDate>{rss_date(DAY)}</lastBuildDate>",
            "    <managingEditor>rss-help@arxiv.org</managingEditor>",
            f"    <pubDate>{rss_date(DAY)}</pubDate>",
            "    <skipDays>",
            "      <day>Saturday</day>",
            "      <day>Sunday</day>",
            "    </skipDays>",
            *items,
            "  </channel>",
            "</rss>",
            "",
        ]
    )


# --- arXiv API -----------------------------------------------------------------------


def wrap_like_api(text: str, width: int = 78) -> str:
    # The API hard-wraps titles and summaries with a two-space continuation indent.
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n  ".join(lines)


def api_entry(
    paper: dict,
    version: int,
    published: datetime,
    updated: datetime,
    *,
    doi: str | None = None,
    journal_ref: str | None = None,
    comment: str | None = None,
    arxiv_id: str | None = None,
) -> str:
    pid = arxiv_id or paper["id"]
    cats = paper["categories"]
    lines = [
        "  <entry>",
        f"    <id>http://arxiv.org/abs/{pid}v{version}</id>",
        f"    <updated>{updated.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>",
        f"    <published>{published.strftime('%Y-%m-%dT%H:%M:%SZ')}</published>",
        f"    <title>{escape(wrap_like_api(paper['title']))}</title>",
        f"    <summary>  {escape(wrap_like_api(paper['abstract']))}\n</summary>",
        *[f"    <author>\n      <name>{escape(a)}</name>\n    </author>" for a in paper["authors"]],
    ]
    if doi:
        lines.append(f"    <arxiv:doi>{escape(doi)}</arxiv:doi>")
        lines.append(
            f'    <link title="doi" href="http://dx.doi.org/{escape(doi)}" rel="related"/>'
        )
    if comment:
        lines.append(f"    <arxiv:comment>{escape(comment)}</arxiv:comment>")
    if journal_ref:
        lines.append(f"    <arxiv:journal_ref>{escape(journal_ref)}</arxiv:journal_ref>")
    lines += [
        f'    <link href="http://arxiv.org/abs/{pid}v{version}" rel="alternate" type="text/html"/>',
        f'    <link title="pdf" href="http://arxiv.org/pdf/{pid}v{version}" rel="related" type="application/pdf"/>',
        f'    <arxiv:primary_category term="{cats[0]}" scheme="http://arxiv.org/schemas/atom"/>',
        *[f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in cats],
        "  </entry>",
    ]
    return "\n".join(lines)


def api_document(query: str, entries: list[str], total: int) -> str:
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
            'xmlns:arxiv="http://arxiv.org/schemas/atom">',
            f'  <link href="http://arxiv.org/api/query?{escape(query)}" rel="self" type="application/atom+xml"/>',
            f'  <title type="html">ArXiv Query: {escape(query)}</title>',
            f"  <id>http://arxiv.org/api/{hex_id('api', query)[:27]}</id>",
            f"  <updated>{DAY.strftime('%Y-%m-%dT00:00:00-04:00')}</updated>",
            f"  <opensearch:totalResults>{total}</opensearch:totalResults>",
            "  <opensearch:startIndex>0</opensearch:startIndex>",
            f"  <opensearch:itemsPerPage>{len(entries)}</opensearch:itemsPerPage>",
            *entries,
            "</feed>",
            "",
        ]
    )


# --- Hugging Face Daily Papers ---------------------------------------------------------


def hf_item(
    paper: dict, upvotes: int, comments: int, published: datetime, *, summary: str | None = None
) -> dict:
    pid = paper["id"]
    submitted = DAY + timedelta(hours=1, minutes=paper["index"] % 50)
    submitter = paper["authors"][0].split()[0].lower() + str(paper["index"])
    return {
        "paper": {
            "id": pid,
            "authors": [
                {"_id": hex_id(pid, a), "name": a, "hidden": False} for a in paper["authors"]
            ],
            "publishedAt": published.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "submittedOnDailyAt": submitted.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "title": paper["title"],
            "summary": summary or paper["abstract"],
            "upvotes": upvotes,
            "discussionId": hex_id("discussion", pid),
        },
        "publishedAt": published.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "title": paper["title"],
        "summary": summary or paper["abstract"],
        "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{pid}.png",
        "numComments": comments,
        "submittedBy": {
            "_id": hex_id("user", submitter),
            "avatarUrl": f"https://cdn-avatars.huggingface.co/v1/production/uploads/{hex_id('avatar', submitter)}.png",
            "isPro": False,
            "fullname": paper["authors"][0],
            "user": submitter,
            "type": "user",
        },
        "isAuthorParticipating": paper["index"] % 3 == 0,
    }


# --- builders ------------------------------------------------------------------------


def build_sample_data(papers: list[dict]) -> dict[str, str]:
    rng = random.Random(20250715)
    # The day's listing: 48 of the 61 papers; a few are cross-lists, replacements of
    # earlier papers, and replace-crosses, as on a real day.
    listed = papers[:48]
    items = []
    for paper in listed:
        i = paper["index"]
        if i % 11 == 5:
            items.append(rss_item(paper, "replace", 2))
        elif i % 13 == 7:
            items.append(
                rss_item(
                    paper, "replace-cross", 3, categories=["stat.ML", *paper["categories"]][:3]
                )
            )
        elif i % 7 == 3:
            items.append(
                rss_item(paper, "cross", 1, categories=["cs.SE", *paper["categories"]][:3])
            )
        else:
            items.append(rss_item(paper, "new", 1))
    rss = rss_document("cs.AI+cs.LG+cs.CL+cs.CR", items)

    # HF Daily Papers for the same day: 24 papers, 18 of them also in the RSS listing.
    chosen = [p for p in papers if p["index"] % 2 == 0][:18] + papers[48:54]
    hf = []
    rng.shuffle(chosen)
    for rank, paper in enumerate(chosen):
        published = DAY - timedelta(days=1, hours=paper["index"] % 20)
        upvotes = int(160 * 0.84**rank) + rng.randint(0, 4)  # a long tail, like the real page
        hf.append(hf_item(paper, upvotes, rng.choice([0, 0, 1, 2, 5]), published))
    hf.sort(key=lambda item: -item["paper"]["upvotes"])

    # An arXiv API search for the rest: the papers neither feed above covers.
    api_papers = papers[54:]
    entries = [
        api_entry(
            p,
            1,
            DAY - timedelta(days=3, hours=p["index"] % 9),
            DAY - timedelta(days=3, hours=p["index"] % 9),
        )
        for p in api_papers
    ]
    api = api_document(
        "search_query=cat:cs.LG AND all:safety&start=0&max_results=50", entries, len(entries)
    )
    return {
        "arxiv_rss_cs.xml": rss,
        "hf_daily.json": json.dumps(hf, ensure_ascii=False, indent=1) + "\n",
        "arxiv_api.xml": api,
    }


def by_title(papers: list[dict], start: str) -> dict:
    for paper in papers:
        if paper["title"].startswith(start):
            return paper
    raise KeyError(start)


def build_fixtures(papers: list[dict]) -> dict[str, str]:
    unlearning = by_title(papers, "Open Problems in Machine Unlearning")
    lora = by_title(papers, "LoRA Fine-tuning Efficiently Undoes")
    aegis = by_title(papers, "Aegis2.0")
    codeattack = by_title(papers, "CodeAttack")
    corrective = by_title(papers, "Corrective Machine Unlearning")
    dices = by_title(papers, "DICES Dataset")
    attention = by_title(papers, "On the Role of Attention Heads")
    labels = by_title(papers, "Pervasive Label Errors")

    # arXiv RSS, cs.LG: new (multi-line title, entities), new with DOI, cross-list,
    # replace (v2 of the v1 in the API fixture), replace-cross.
    items = [
        rss_item(
            unlearning,
            "new",
            1,
            title="Open Problems in Machine Unlearning\n      for AI Safety",
            abstract=unlearning["abstract"]
            + ' Code &amp; data: see the <a href="https://example.org/code">project page</a>.',
        ),
        rss_item(aegis, "new", 1, doi="10.48550/arXiv." + aegis["id"]),
        rss_item(codeattack, "cross", 1, categories=["cs.CR", "cs.CL", "cs.LG"]),
        rss_item(lora, "replace", 2, doi="10.1000/lora.2024.17"),
        rss_item(corrective, "replace-cross", 3, categories=["stat.ML", "cs.LG"]),
        rss_item(dices, "new", 1),
    ]
    rss = rss_document("cs.LG", items)

    # arXiv API: v1 of the LoRA paper (RSS has v2), the same unlearning paper (v1), an
    # old-style id, and an entry with a DOI and journal reference.
    old_style = dict(
        by_title(papers, "Which Invariance Should We Transfer"), categories=["stat.ML", "cs.LG"]
    )
    entries = [
        api_entry(
            lora,
            1,
            DAY - timedelta(days=40),
            DAY - timedelta(days=40),
            comment="12 pages, 4 figures",
        ),
        api_entry(unlearning, 1, DAY - timedelta(hours=20), DAY - timedelta(hours=20)),
        api_entry(
            old_style,
            2,
            datetime(2001, 3, 2, 17, 1, tzinfo=UTC),
            datetime(2001, 5, 9, 9, 30, tzinfo=UTC),
            arxiv_id="cs/0103004",
        ),
        api_entry(
            attention,
            1,
            DAY - timedelta(days=2),
            DAY - timedelta(days=2),
            doi="10.1000/ATTN.Heads.2025",
            journal_ref="Proc. ICML 2025, pp. 1-12",
        ),
    ]
    api = api_document("search_query=all:safety&id_list=&start=0&max_results=4", entries, 1234)

    # HF: the unlearning paper (also in RSS and API), CodeAttack (RSS cross-list), and
    # two papers only HF has; one summary carries HTML entities.
    hf_papers = [
        hf_item(unlearning, 42, 3, DAY - timedelta(hours=20)),
        hf_item(codeattack, 17, 0, DAY - timedelta(days=1)),
        hf_item(
            attention,
            9,
            1,
            DAY - timedelta(days=2),
            summary=attention["abstract"].replace("safety", "safety &amp; alignment", 1)
            + " We release code &lt;here&gt;.",
        ),
        hf_item(labels, 5, 2, DAY - timedelta(days=1, hours=3)),
    ]
    hf_papers[3]["paper"]["authors"].append(
        {"_id": hex_id("hidden"), "name": "  Hidden\n  Author ", "hidden": True}
    )

    return {
        "arxiv_rss_cs_lg.xml": rss,
        "arxiv_api_query.xml": api,
        "hf_daily.json": json.dumps(hf_papers, ensure_ascii=False, indent=2) + "\n",
        "biorxiv.rdf": biorxiv_document(papers),
        # The same listing as Atom: three of the RSS items, one with a comma in a name.
        "arxiv_atom_cs_lg.xml": atom_document(
            "cs.LG",
            [
                atom_entry(unlearning, "new", 1),
                atom_entry(dict(aegis, authors=["Ada Lovelace, Jr.", *aegis["authors"]]), "new", 1),
                atom_entry(lora, "replace", 2),
            ],
        ),
        "blog_atom.xml": blog_document(papers, unlearning),
    }


def biorxiv_document(papers: list[dict]) -> str:
    """RSS 1.0 shaped like bioRxiv's subject feeds: DOIs in dc:identifier, ?rss=1 links."""
    picks = [
        (
            by_title(
                papers, "A Text Classification Framework for Simple and Effective Early Depression"
            ),
            "2025.07.10.664123",
            1,
        ),
        (
            by_title(papers, "Accident Risk Prediction based on Heterogeneous"),
            "2025.07.11.664501",
            1,
        ),
        # The same preprint twice (v1 and v2 in one feed): one DOI, so one paper.
        (by_title(papers, "Anomaly Detection using Autoencoders"), "2025.07.09.663870", 1),
        (by_title(papers, "Anomaly Detection using Autoencoders"), "2025.07.09.663870", 2),
    ]
    links = [f"http://biorxiv.org/cgi/content/short/{d}v{v}?rss=1" for _, d, v in picks]
    items = []
    for (paper, doi_suffix, version), link in zip(picks, links, strict=True):
        creators = ", ".join(f"{a.split()[-1]}, {a.split()[0][0]}." for a in paper["authors"])
        items.append(
            "\n".join(
                [
                    f'<item rdf:about="{escape(link)}">',
                    f"<title><![CDATA[{paper['title']}]]></title>",
                    f"<link>{escape(link)}</link>",
                    f"<description><![CDATA[{paper['abstract']}]]></description>",
                    f"<dc:creator><![CDATA[{creators}]]></dc:creator>",
                    f"<dc:date>{(DAY - timedelta(days=3 - version)).date().isoformat()}</dc:date>",
                    f"<dc:identifier>doi:10.1101/{doi_suffix}</dc:identifier>",
                    f"<dc:title><![CDATA[{paper['title']}]]></dc:title>",
                    "<dc:publisher>Cold Spring Harbor Laboratory</dc:publisher>",
                    f"<prism:publicationDate>{(DAY - timedelta(days=3 - version)).date().isoformat()}</prism:publicationDate>",
                    "<prism:section></prism:section>",
                    "</item>",
                ]
            )
        )
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            'xmlns:admin="http://webns.net/mvcb/" xmlns:prism="http://prismstandard.org/namespaces/1.2/basic/" '
            'xmlns:taxo="http://purl.org/rss/1.0/modules/taxonomy/" xmlns:syn="http://purl.org/rss/1.0/modules/syndication/" '
            'xmlns="http://purl.org/rss/1.0/">',
            '<channel rdf:about="http://connect.biorxiv.org/biorxiv_xml/bioinformatics">',
            "<title>bioRxiv Subject Collection: Bioinformatics</title>",
            "<link>http://biorxiv.org</link>",
            '<description>This feed contains articles for bioRxiv Subject Collection "Bioinformatics"</description>',
            "<items>",
            "<rdf:Seq>",
            *[f'<rdf:li rdf:resource="{escape(link)}"/>' for link in links],
            "</rdf:Seq>",
            "</items>",
            "<prism:eIssn/>",
            "<prism:publicationName>bioRxiv</prism:publicationName>",
            "</channel>",
            *items,
            "</rdf:RDF>",
            "",
        ]
    )


def blog_document(papers: list[dict], unlearning: dict) -> str:
    """An Atom blog feed: relative links, an entry about an arXiv paper, an HTML title."""
    guardrails = by_title(papers, "Current state of LLM Risks and AI Guardrails")
    return "\n".join(
        [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.org/">',
            "  <title>Safety Reading Group</title>",
            '  <link href="https://blog.example.org/" rel="alternate"/>',
            '  <link href="https://blog.example.org/feed.atom" rel="self"/>',
            "  <id>https://blog.example.org/</id>",
            f"  <updated>{DAY.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>",
            "  <entry>",
            "    <title>This week: open problems in unlearning</title>",
            '    <link href="/posts/2025/unlearning-open-problems" rel="alternate"/>',
            f'    <link href="https://arxiv.org/abs/{unlearning["id"]}v1" rel="related"/>',
            "    <id>tag:blog.example.org,2025:post-41</id>",
            f"    <published>{DAY.strftime('%Y-%m-%dT08:30:00+02:00')}</published>",
            f"    <updated>{DAY.strftime('%Y-%m-%dT09:00:00+02:00')}</updated>",
            "    <author><name>Reading\n      Group</name></author>",
            f'    <summary type="html">{escape("<p>Our notes on <em>" + unlearning["title"] + "</em> &amp; why it matters.</p>")}</summary>',
            "  </entry>",
            "  <entry>",
            f'    <title type="html">{escape(escape(guardrails["title"]) + " &amp; <b>what to do</b>")}</title>',
            '    <link href="posts/2025/guardrails"/>',
            "    <id>tag:blog.example.org,2025:post-40</id>",
            f"    <updated>{(DAY - timedelta(days=7)).strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>",
            '    <category term="guardrails"/>',
            '    <category term="llm"/>',
            f'    <content type="html">{escape("<p>" + guardrails["abstract"] + "</p><script>alert(1)</script>")}</content>',
            "  </entry>",
            "  <entry>",
            "    <title>An entry with neither a link nor a URL id</title>",
            "    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>",
            f"    <updated>{DAY.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>",
            "  </entry>",
            "</feed>",
            "",
        ]
    )


def main() -> None:
    papers = load_seed()
    seed_ids = {p["title"]: p["id"] for p in papers}
    (ROOT / "tests" / "data" / "seed_ids.json").write_text(
        json.dumps(seed_ids, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    for name, text in build_sample_data(papers).items():
        (SAMPLE_DIR / name).write_text(text, encoding="utf-8")
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in build_fixtures(papers).items():
        (FIXTURE_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(seed_ids)} ids, sample data to {SAMPLE_DIR}, fixtures to {FIXTURE_DIR}")


if __name__ == "__main__":
    main()

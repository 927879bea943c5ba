"""RFI 中文-shaped articles made up from a dozen stories: ~3 KB HTML bodies of nested
spans, percent-encoded Chinese URLs, deterministic for a seed (bench/import.py's input).

tests/support/rss.py's ``rfi_like_items`` serves these as feed items (the tests may use
the benchmarks' support; the benchmarks never import the tests).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Article:
    title: str
    link: str
    html: str
    pub_ms: int
    section: str


_SECTIONS = ("国际", "中国", "法国", "欧洲", "亚洲", "经贸")

# (title, section, lead sentence); several carry the keywords rules are written about.
_STORIES: Sequence[tuple[str, str, str]] = (
    (
        '中俄关系进入"新时代"，普京与习近平签署联合声明',
        "国际",
        "中国国家主席习近平与俄罗斯总统普京在莫斯科会谈，双方宣布深化全面战略协作伙伴关系。",
    ),
    (
        "乌克兰总统泽连斯基呼吁西方加快援助",
        "欧洲",
        "泽连斯基周一表示，乌克兰需要更多防空系统以应对俄罗斯的导弹袭击。",
    ),
    (
        "习近平访问法国 马克龙谈贸易平衡",
        "法国",
        "法国总统马克龙在爱丽舍宫接待中国国家主席习近平，双方讨论了电动汽车与农产品贸易。",
    ),
    (
        "台湾海峡紧张局势升级 美国派舰通过",
        "亚洲",
        "美国海军一艘驱逐舰周二通过台湾海峡，北京表示强烈不满。",
    ),
    (
        "欧盟对中国电动汽车加征关税",
        "经贸",
        "欧盟委员会宣布对从中国进口的电动汽车征收临时反补贴税，北京称将采取措施维护权益。",
    ),
    (
        "乌克兰战争两周年：前线僵持与和谈前景",
        "欧洲",
        "俄乌战争进入第三年，基辅与莫斯科均未显示出妥协迹象。",
    ),
    (
        "中国经济增速放缓 房地产危机持续",
        "经贸",
        "国家统计局公布的数据显示，房地产投资继续下滑，消费信心疲弱。",
    ),
    (
        "香港国安法实施后 多名民主派人士被判刑",
        "中国",
        "香港法院对民主派初选案作出判决，多名被告被判处监禁。",
    ),
    (
        "普京称俄罗斯愿与西方谈判 但拒绝撤军",
        "国际",
        "俄罗斯总统普京在年度记者会上表示，俄方对谈判持开放态度。",
    ),
    (
        '巴黎奥运会开幕 中国代表团"全力以赴"',
        "法国",
        "第三十三届夏季奥运会在巴黎开幕，中国体育代表团派出四百余名运动员参赛。",
    ),
    (
        "中美高层会晤 讨论芯片出口管制",
        "国际",
        "美国国务卿布林肯抵达北京，与中国外长就芯片出口管制和芬太尼问题进行会谈。",
    ),
    (
        "新疆人权问题：联合国报告引发争议",
        "中国",
        "联合国人权事务高级专员办事处发布报告，北京予以驳斥。",
    ),
)

_PARAGRAPHS = (
    "法新社说，这次访问被视为北京与莫斯科关系的一个重要信号。",
    '分析人士指出，"双方在能源与军工领域的合作仍在加深"。',
    "白宫国家安全委员会发言人表示，美国将继续密切关注事态发展。",
    "欧洲议会多名议员呼吁欧盟采取更加协调一致的立场。",
    "外交部发言人在例行记者会上回答了相关提问，称中方立场是一贯的、明确的。",
    "据路透社报道，有关谈判可能在未来几周内继续进行。",
    "乌克兰外交部长表示，任何和平方案都必须尊重乌克兰的领土完整。",
    "中国官方媒体新华社对此事进行了简短报道。",
)


def _nested(text: str, depth: int) -> str:
    # RFI bodies wrap each paragraph in up to six empty <span>s (pasted from an editor).
    return "<p>" + "<span>" * depth + escape(text) + "</span>" * depth + "</p>"


def _share_buttons(link: str, title: str) -> str:
    target = quote(link, safe="")
    text = quote(title, safe="")
    return (
        f'<div><a href="https://www.facebook.com/dialog/share?app_id=113191652055439&amp;'
        f'href={target}&amp;locale=zh_CN" target="_blank" rel="noopener nofollow"><span>'
        f'</span></a><a href="https://x.com/intent/tweet?url={target}&amp;via=RFI_Cn&amp;'
        f'text={text}&amp;lang=zh-cn" target="_blank" rel="noopener nofollow"><span></span>'
        '</a><span data-root-share><share-button v-on:open="openModal"></share-button>'
        '<share-modal v-if="displayModal" v-on:close="closeModal"></share-modal></span></div>'
    )


def _body(rng: random.Random, link: str, title: str, lead: str, pub_ms: int) -> str:
    when = datetime.fromtimestamp(pub_ms / 1000, UTC).strftime("%d/%m/%Y - %H:%M")
    picture = f"{rng.getrandbits(64):016x}"
    paragraphs = rng.sample(_PARAGRAPHS, k=rng.randint(2, 5))
    parts = [
        f"<div>{when}</div>",
        f'<img src="https://s.rfi.fr/media/display/{picture}/w:1280/p:16x9/photo.jpg">',
        f"<p><strong>{escape(lead)}                    </strong></p><div>",
        *(_nested(p, rng.randint(1, 6)) for p in paragraphs),
    ]
    if rng.random() < 0.3:
        parts.append(
            '<div data-tms-ad-type="box" data-tms-ad-status="idle" data-tms-ad-pos="1">'
            "<div><span>广告</span></div></div>"
        )
    parts.append("<p>&nbsp;</p><div data-selfpromo-newsletter></div><div data-selfpromo-app>")
    parts.append("</div></div>")
    parts.append(_share_buttons(link, title))
    return "".join(parts)


def rfi_link(section: str, pub_ms: int, title: str) -> str:
    """An RFI-style article URL: percent-encoded section and slug after the date."""
    day = datetime.fromtimestamp(pub_ms / 1000, UTC).strftime("%Y%m%d")
    slug = "".join(c if c.isalnum() else "-" for c in title).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"https://www.rfi.fr/cn/{quote(section)}/{day}-{quote(slug)}"


@dataclass
class _Uniq:
    seen: dict[str, int] = field(default_factory=dict)

    def __call__(self, link: str) -> str:
        n = self.seen.get(link, 0) + 1
        self.seen[link] = n
        return link if n == 1 else f"{link}-{n}"


def rfi_like_articles(
    n: int,
    start_ms: int = 1679494503000,
    *,
    step_ms: int = 600_000,
    per_stamp: int = 1,
    seed: int = 20230322,
) -> list[Article]:
    """``n`` plausible RFI 中文 articles, oldest first, the same for the same arguments.

    Times start at ``start_ms`` and grow by ``step_ms`` every ``per_stamp`` articles, so
    ``per_stamp=5`` gives groups sharing one timestamp, as mirror archives do. Titles
    and links are unique; two stories in twelve have ASCII double quotes in the title.
    """
    rng = random.Random(seed)
    uniq = _Uniq()
    # Each round tells every story once, in a shuffled order; later rounds number
    # the title ("（2）") so titles never repeat.
    order: list[int] = []
    while len(order) < n:
        one_round = list(range(len(_STORIES)))
        rng.shuffle(one_round)
        order.extend(one_round)
    items: list[Article] = []
    for i in range(n):
        base_title, section, lead = _STORIES[order[i]]
        round_no = i // len(_STORIES)
        title = base_title if round_no == 0 else f"{base_title}（{round_no + 1}）"
        pub_ms = start_ms + (i // per_stamp) * step_ms
        link = uniq(rfi_link(section, pub_ms, title))
        items.append(Article(title, link, _body(rng, link, title, lead, pub_ms), pub_ms, section))
    return items

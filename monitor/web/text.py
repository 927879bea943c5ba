"""What the console's pages show, as text: translations (en, zh), times in the configured
zone, links that may be followed, snippets with their hits marked (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from monitor.match.normalize import fold_text, fold_with_offsets, plain_text

ZH: dict[str, str] = {
    "Overview": "概览",
    "Alerts": "警报",
    "Feeds": "订阅源",
    "Channels": "通道",
    "Rules": "规则",
    "feed": "订阅源",
    "health": "状态",
    "last poll": "上次抓取",
    "outcome": "结果",
    "next poll": "下次抓取",
    "failures": "连续失败",
    "last error": "最近错误",
    "healthy": "正常",
    "unhealthy": "异常",
    "disabled": "已停用",
    "never": "从未",
    "channel": "通道",
    "pending": "待发送",
    "retrying": "重试中",
    "held": "暂缓",
    "silenced": "已静默",
    "dead": "失败",
    "sent": "已发送",
    "rule": "规则",
    "matches 24 h": "24 小时匹配",
    "matches 7 d": "7 天匹配",
    "not configured": "未配置",
    "title": "标题",
    "feeds": "订阅源",
    "snippet": "摘要",
    "delivery": "投递",
    "time": "时间",
    "state": "状态",
    "any": "全部",
    "Filter": "筛选",
    "Older": "更早",
    "Newest": "最新",
    "No alerts.": "没有警报。",
    "new alerts": "条新警报",
    "Recent items": "最近条目",
    "Last poll": "上次抓取",
    "status code": "状态码",
    "Its rules": "适用规则",
    "Matches per day, last 30 days": "近 30 天每日匹配",
    "Recent matches": "最近匹配",
    "Backtest": "回测",
    "Run a query over stored items; nothing is sent.": "在已存条目上运行查询，不会发送任何消息。",
    "query": "查询",
    "since": "时间范围",
    "Run": "运行",
    "all": "全部",
    "matches in": "条匹配，共检查",
    "stored items; nothing was sent": "条已存条目；未发送任何消息",
    "Silences": "静默",
    "ends": "结束",
    "comment": "备注",
    "Expire": "结束静默",
    "Silence": "静默",
    "for": "时长",
    "Redeliver dead letters": "重新投递失败警报",
    "Log in": "登录",
    "Log out": "退出",
    "admin token": "管理令牌",
    "Wrong token.": "令牌错误。",
    "read-only": "只读",
    "admin": "管理",
    "Done": "完成",
    "Not found": "未找到",
    "published": "发布",
    "seen": "发现",
    "attempts": "尝试次数",
    "next attempt": "下次尝试",
    "until": "直到",
    "by silence": "静默",
    "error": "错误",
    "all feeds": "全部订阅源",
    "Items": "条目",
    "alerts": "警报",
    "items": "条目",
    "Times in": "时区",
    "no link": "无链接",
    "Query error": "查询错误",
    "alerted": "已警报",
    "recorded only": "仅记录",
    "no matches": "无匹配",
    "Previous": "上一页",
    "Next": "下一页",
    "Recent polls": "最近抓取",
    "time taken": "耗时",
    "new": "新增",
    "updated": "更新",
    "none since this daemon started": "本进程启动以来尚无",
}


class Text:
    """The console's words and times for one language and time zone."""

    def __init__(self, language: str, timezone: str) -> None:
        self.language = language
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self._words = ZH if language == "zh" else {}

    def __call__(self, phrase: str) -> str:
        return self._words.get(phrase, phrase)

    def time(self, ms: int | None, seconds: bool = False) -> str:
        if ms is None:
            return self("never")
        when = datetime.fromtimestamp(ms / 1000, self.tz)
        return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def day(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, self.tz).strftime("%m-%d")


def followable(url: str | None) -> str | None:
    """The URL when a browser may follow it (http or https with a host), else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def shown_title(title: str) -> str:
    """A stored title as text: entities decoded, tags dropped (escaped later)."""
    return plain_text(title) or "(untitled)"


def marked(snippet: str, keywords: Iterable[str]) -> Markup:
    """``snippet`` escaped, with each hit of ``keywords`` in ``<mark>``.

    Hits are found as the matcher finds them (folded: width, case, Traditional →
    Simplified) and mapped back to the snippet's own characters."""
    words = [w for w in {fold_text(k) for k in keywords} if w]
    if not snippet or not words:
        return Markup(escape(snippet))
    folded, offsets = fold_with_offsets(snippet)
    spans: list[tuple[int, int]] = []
    for word in words:
        start = folded.find(word)
        while start >= 0:
            end = start + len(word)
            spans.append((offsets[start], offsets[min(end, len(offsets) - 1)]))
            start = folded.find(word, end)
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos or end <= start:
            continue
        out.append(str(escape(snippet[pos:start])))
        out.append(f"<mark>{escape(snippet[start:end])}</mark>")
        pos = end
    out.append(str(escape(snippet[pos:])))
    return Markup("".join(out))

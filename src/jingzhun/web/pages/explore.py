"""The recommendations explorer: pick a user and/or type a session of items, choose any trained
recommender, and see its list beside the popularity model's for the same request, with scores
and reasons in the page's language.

A user alone is served by ``recs.for_user``; items (with or without a user) by
``recs.in_context``, as ``GET /v1/users/{id}/recommendations?context=`` does, on the server's
one recommender (``state.recs``: each model loaded once) and the user's live history.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from jingzhun.api.deps import get_state
from jingzhun.api.routes.users import MAX_CONTEXT
from jingzhun.errors import InputError, NotFoundError
from jingzhun.report.i18n import Translator, register
from jingzhun.store.desensitize import user_key
from jingzhun.web.common import lang_of, number, render, signed_in
from jingzhun.web.pages.users import MAX_ID

router = APIRouter(include_in_schema=False)

#: List lengths offered.
SIZES = (5, 10, 20)
#: The longest item text the form takes (50 ids of 256 characters, commas and spaces).
MAX_ITEMS_TEXT = MAX_CONTEXT * (MAX_ID + 2)

register(
    {
        "web_explore_title": ("Recommendations explorer", "推荐探索"),
        "web_explore_intro": (
            "Pick a user, or type the items of a session (oldest first), and compare a "
            "model's list with the popularity model's.",
            "选择一位用户，或输入一次会话中浏览的商品（按时间先后），将所选模型的推荐与热门模型对比。",
        ),
        "web_explore_user": ("User", "用户"),
        "web_explore_user_help": ("A user id (optional).", "用户 ID（可不填）。"),
        "web_explore_items": ("Session items", "会话商品"),
        "web_explore_items_help": (
            "Item ids separated by commas, oldest first (at most {value}).",
            "用逗号分隔的商品 ID，按时间先后（最多 {value} 个）。",
        ),
        "web_explore_model": ("Model", "模型"),
        "web_explore_k": ("How many", "推荐数量"),
        "web_explore_show": ("Show recommendations", "查看推荐"),
        "web_explore_active": ("active", "当前启用"),
        "web_explore_pick": (
            "Pick a user or type some items to see recommendations.",
            "请选择用户或输入商品以查看推荐。",
        ),
        "web_explore_too_many": (
            "Session items: {value} items; type at most 50.",
            "会话商品：共 {value} 个，最多 50 个。",
        ),
        "web_explore_too_long_item": (
            "Session items: an item id is longer than 256 characters.",
            "会话商品：有商品 ID 超过 256 个字符。",
        ),
        "web_explore_too_long_user": (
            "User: at most 256 characters.",
            "用户：最多 256 个字符。",
        ),
        "web_explore_no_user": (
            "User: the store knows no user {value!r}.",
            "用户：数据库中没有用户 {value!r}。",
        ),
        "web_explore_no_model": (
            "Model: there is no trained recommender {value!r}; pick one from the list.",
            "模型：没有名为 {value!r} 的推荐模型，请从列表中选择。",
        ),
        "web_explore_no_models": (
            "No recommender trained yet (jingzhun recommend train).",
            "还没有训练推荐模型（jingzhun recommend train）。",
        ),
        "web_explore_no_popularity": (
            "No popularity model is trained, so there is nothing to compare with "
            "(jingzhun recommend train popularity).",
            "还没有训练热门模型，无法对比（jingzhun recommend train popularity）。",
        ),
        "web_explore_popularity": ("Popularity (baseline)", "热门模型（基线）"),
        "web_explore_chosen": ("Chosen model", "所选模型"),
        "web_explore_cold": (
            "Cold start: nothing of the request is known to the model, so the list is popular "
            "items.",
            "冷启动：模型不认识请求中的任何内容，推荐的是热门商品。",
        ),
        "web_explore_personal": (
            "Not cold start: the model knows the user or some of the items.",
            "非冷启动：模型认识该用户或部分商品。",
        ),
        "web_explore_unknown": ("Unknown to the model: {value}", "模型不认识的商品：{value}"),
        "web_explore_user_unknown": (
            "The model was trained before this user had history: their live events are used.",
            "模型训练时该用户还没有历史：使用其实时行为。",
        ),
        "web_explore_session": ("Session", "会话"),
        "web_explore_examples": ("Examples to start from", "示例"),
        "web_explore_example_users": ("Users", "用户"),
        "web_explore_popular_items": (
            "Popular items (start a session)",
            "热门商品（以此开始会话）",
        ),
        "web_explore_last_items": (
            "This user's latest items (as the session)",
            "该用户最近互动的商品（作为会话）",
        ),
        "web_explore_add": ("add to the session", "加入会话"),
        "web_explore_clear": ("Clear", "清空"),
        "web_explore_changed": (
            "{value} items differ from the popularity model's list.",
            "有 {value} 个商品与热门模型的推荐不同。",
        ),
    }
)


@router.get("/explore", response_class=HTMLResponse)
def explore_page(
    request: Request,
    user: str | None = None,
    items: str | None = None,
    model: str | None = None,
    k: str | None = None,
) -> Response:
    session = signed_in(request)
    state = get_state(request)
    ws = state.readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    size = number(k, 10, lo=1, hi=50)
    size = size if size in SIZES else 10
    uid = (user or "").strip()
    text = (items or "").strip()
    errors: dict[str, str] = {}
    if len(uid) > MAX_ID:
        errors["user"] = t("web_explore_too_long_user")
    session_items: list[str] = []
    if len(text) > MAX_ITEMS_TEXT:
        errors["session"] = t("web_explore_too_many").format(value=f"{text.count(',') + 1:,}")
    else:
        session_items = [i.strip() for i in text.split(",") if i.strip()]
        if len(session_items) > MAX_CONTEXT:
            errors["session"] = t("web_explore_too_many").format(value=len(session_items))
        elif any(len(i) > MAX_ID for i in session_items):
            errors["session"] = t("web_explore_too_long_item")
    models = ws.models.list("recommender")
    active = next((m for m in models if m.active), None)
    chosen = active
    if model:
        chosen = next((m for m in models if m.model_id == model), None)
        if chosen is None:
            errors["model"] = t("web_explore_no_model").format(value=_short(model))
    if uid and "user" not in errors and not _known(ws, uid):
        errors["user"] = t("web_explore_no_user").format(value=_short(uid))
    popularity = next(
        (m for m in models if m.method == "popularity" and m.active),
        next((m for m in models if m.method == "popularity"), None),
    )
    asked = bool(uid or session_items) and not errors and chosen is not None
    left = right = None
    if asked:
        assert chosen is not None
        left = _list(state, ws, uid, session_items, size, chosen.model_id, lang)
        if popularity is not None:
            right = _list(state, ws, uid, session_items, size, popularity.model_id, lang)
    changed = None
    if left and right:
        changed = len(
            {i["item_id"] for i in left["items"]} - {i["item_id"] for i in right["items"]}
        )
    return render(
        request,
        "explore.html",
        session,
        status=422 if errors else 200,
        user=uid[:MAX_ID] if "user" not in errors else uid[:80],
        items_text=text[:2000] if "session" in errors else text,
        k=size,
        sizes=SIZES,
        models=models,
        active_id=active.model_id if active else None,
        chosen=chosen.model_id if chosen else (model or "")[:80],
        errors=errors,
        asked=asked,
        left=left,
        right=right,
        popularity=popularity,
        changed=changed,
        session_titles=_titles(ws, session_items) if asked else [],
        examples=_examples(ws, uid if asked else "", session_items, size, chosen),
        max_items=50,
    )


def _short(value: str) -> str:
    return value if len(value) <= 80 else value[:80] + "…"


def _known(ws: Any, uid: str) -> bool:
    try:
        ws.ingest.timeline(uid, limit=1)
        return True
    except NotFoundError:
        return False


def _list(
    state: Any, ws: Any, uid: str, items: list[str], k: int, model: str, lang: str
) -> dict[str, Any]:
    """One model's list for the request, each item with its category."""
    history = None
    if uid:
        uid = user_key(ws.store, uid)  # the pseudonym in a pseudonymized store
        try:
            history = state.live.interactions(uid)
        except InputError:
            history = None
    if items:
        got = state.recs.in_context(
            items, k, user_id=uid or None, model=model, lang=lang, history=history
        ).to_dict()
    else:
        got = state.recs.for_user(uid, k, model=model, lang=lang, history=history).to_dict()
        got |= {"context": [], "unknown_items": []}
    catalog = ws.recs.items([i["item_id"] for i in got["items"]])
    for i in got["items"]:
        i["category"] = catalog.get(i["item_id"], {}).get("category")
    return got


def _titles(ws: Any, items: list[str]) -> list[tuple[str, str]]:
    catalog = ws.recs.items(items)
    return [(i, catalog.get(i, {}).get("title") or "") for i in items]


def _examples(ws: Any, uid: str, items: list[str], k: int, chosen: Any) -> dict[str, Any]:
    """Links to start from: users whose lists show what the model does, popular items, and the
    user's own latest items."""
    keep = {"k": k} | ({"model": chosen.model_id} if chosen and not chosen.active else {})
    users = ws.recs.example_users(5)
    if not users:
        try:
            users = list(ws.profiles.search("", limit=5, by="monetary")["user_id"])
        except NotFoundError:
            users = []
    popular = ws.recs.popular(8)
    base_items = list(items)
    out: dict[str, Any] = {
        "users": [(u, "/explore?" + urlencode(keep | {"user": u})) for u in users],
        "popular": [
            (
                r["title"] if isinstance(r["title"], str) and r["title"] else r["item_id"],
                r["item_id"],
                "/explore?"
                + urlencode(
                    keep
                    | ({"user": uid} if uid else {})
                    | {"items": ",".join([*base_items, r["item_id"]][-50:])}
                ),
            )
            for r in popular.to_dict("records")
            if r["item_id"] not in base_items
        ],
        "last": None,
    }
    if uid:
        try:
            last = ws.profiles.user(uid, events=0).traits.get("last_items") or []
        except NotFoundError:
            last = []
        if last:
            session = list(reversed([str(i) for i in last]))  # oldest first
            out["last"] = (
                [title or i for i, title in _titles(ws, session)],
                "/explore?" + urlencode(keep | {"user": uid, "items": ",".join(session)}),
            )
    return out


__all__ = ["router"]

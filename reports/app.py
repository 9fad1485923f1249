"""The analysts' web app (Streamlit): sign-in, gallery search, review queue, finding detail, allowlist."""
from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from pipeline.config import Settings, load_settings
from pipeline.db import Database
from pipeline.review import STATUSES, VERBS
from reports import appcore

log = logging.getLogger(__name__)

VIEWS = ("Search", "Review queue", "Finding detail", "Allowlist")
RESULTS_PER_ROW = 5


@st.cache_resource
def _backend() -> tuple[Settings, Database]:
    settings = load_settings()
    return settings, Database(settings.database_url)


def _sign_in_form(db: Database) -> None:
    st.title("copywatch: analysts")
    with st.form("sign-in"):
        name = st.text_input("Analyst")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        who = appcore.sign_in(db, name, password)
        if who is None:
            st.error("Wrong analyst name or password (or too many attempts: wait a few minutes).")
            return
        st.session_state["analyst"] = who
        st.rerun()


def _sidebar(db: Database, who: appcore.Analyst) -> tuple[str | None, str]:
    st.sidebar.write(f"Signed in as **{who.name}**")
    if st.sidebar.button("Sign out"):
        st.session_state.clear()
        st.rerun()
    choices = appcore.client_choices(db, who)
    if not choices:
        st.sidebar.warning("No clients are assigned to you.")
        return None, VIEWS[0]
    names = dict(choices)
    slug = st.sidebar.selectbox("Client", [c for c, _ in choices], format_func=lambda c: f"{names[c]} ({c})")
    view = st.sidebar.radio("View", VIEWS)
    return slug, view


def _search_view(db: Database, settings: Settings, who: appcore.Analyst, slug: str) -> None:
    st.header("Search the gallery")
    st.write("Upload an image: the 10 most similar protected images of this client, with the matched regions outlined in red.")
    upload = st.file_uploader("Image to search", type=["png", "jpg", "jpeg", "webp", "gif", "bmp"])
    if upload is None:
        return
    try:
        query, hits = appcore.search(db, settings, who, slug, upload.getvalue())
    except ValueError as e:
        st.error(f"Cannot search this file: {e}")
        return
    st.success(f"{len(hits)} results")
    left, right = st.columns([1, 4])
    with left:
        st.image(query, caption="Uploaded image (best matched region outlined)", width="stretch")
    with right:
        for start in range(0, len(hits), RESULTS_PER_ROW):
            cols = st.columns(RESULTS_PER_ROW)
            for col, (hit, thumb) in zip(cols, hits[start:start + RESULTS_PER_ROW]):
                with col:
                    if thumb is not None:
                        st.image(thumb, width="stretch")
                    st.text(f"#{hit.rank}  score {hit.score:.3f}\n{hit.label}\ninliers {hit.inliers}\nregion {hit.gallery_box if hit.score > 0 else '-'}")


def _queue_view(db: Database, who: appcore.Analyst, slug: str) -> None:
    st.header("Review queue")
    status = st.selectbox("Status", STATUSES, index=0)
    rows = appcore.queue(db, who, slug, status)
    st.write(f"{len(rows)} findings")
    for row in rows:
        with st.container(border=True):
            st.text(f"#{row['id']}  {row['status']}  score {row['score']:.3f}  overlap {row['overlap_pct']}%\n"
                    f"{row['shop']}  {row['title']}\n{row['page_url']}\n{row['seller'] or 'no seller identity'}")
            note = st.text_input("Note", key=f"note-{row['id']}")
            cols = st.columns(len(VERBS))
            for col, verb in zip(cols, VERBS):
                if col.button(f"{verb.capitalize()} #{row['id']}", key=f"{verb}-{row['id']}"):
                    d = appcore.review(db, who, row["id"], verb, note)
                    st.session_state["flash"] = f"Finding {d['finding_id']}: {d['previous_status']} → {d['decision']} by {d['analyst']}"
                    st.rerun()


def _detail_view(db: Database, settings: Settings, who: appcore.Analyst, slug: str) -> None:
    st.header("Finding detail")
    ids = [r["id"] for r in appcore.queue(db, who, slug, None)]
    if not ids:
        st.write("No findings for this client.")
        return
    finding_id = st.selectbox("Finding", ids)
    d = appcore.detail(db, settings, who, slug, finding_id)
    left, right = st.columns(2)
    for col, caption, im in ((left, "Protected image", d.protected), (right, "Suspect image", d.suspect)):
        with col:
            if im is not None:
                st.image(im, caption=caption)
            else:
                st.warning(f"{caption}: unavailable")
    st.table(pd.DataFrame({"value": [str(v) for v in d.facts.values()]}, index=list(d.facts)))
    st.subheader("Audit trail")
    if d.audit:
        st.table(pd.DataFrame(d.audit))
    else:
        st.write("No decisions yet.")


def _allowlist_view(db: Database, who: appcore.Analyst, slug: str) -> None:
    st.header("Allowlist (authorised sellers)")
    with st.form("allowlist"):
        kind = st.radio("Kind", ("domain", "business_number"))
        value = st.text_input("Domain or business registration number")
        if st.form_submit_button("Add"):
            try:
                n = appcore.add_to_allowlist(db, who, slug, kind, value)
            except ValueError as e:
                st.error(str(e))
            else:
                st.success(f"Added; {n} findings authorised.")
    entries = appcore.allowlist(db, who, slug)
    if entries:
        st.dataframe(pd.DataFrame(entries), hide_index=True)
    else:
        st.write("The allowlist is empty.")


def main() -> None:
    st.set_page_config(page_title="copywatch analysts", layout="wide")
    settings, db = _backend()
    who = st.session_state.get("analyst")
    if who is None:
        _sign_in_form(db)
        return
    slug, view = _sidebar(db, who)
    if slug is None:
        return
    if "flash" in st.session_state:
        st.success(st.session_state.pop("flash"))
    if view == "Search":
        _search_view(db, settings, who, slug)
    elif view == "Review queue":
        _queue_view(db, who, slug)
    elif view == "Finding detail":
        _detail_view(db, settings, who, slug)
    else:
        _allowlist_view(db, who, slug)


main()

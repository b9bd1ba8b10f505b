"""Search (api-v1.md §10): the domain's searches (wave_web.search) as JSON.

Totals are real (a COUNT over the same WHERE) and pages are cut in the database.
An unexpected failure is a 500 `Search failed: internal error` (errors.py, for every
`api.search_*` endpoint). Searches only read (`writes=False`): SQLite does not take
its write lock for them, and the key's last use is written apart (keys.py).
"""

from __future__ import annotations

from typing import Any

from wave_web import jsonvalues
from wave_web import search
from wave_web.api import shapes
from wave_web.api.http import endpoint
from wave_web.api.schemas import AdvancedSearch
from wave_web.api.schemas import DataSearchOut
from wave_web.api.schemas import DataTagSearch
from wave_web.api.schemas import ExperimentSearchOut
from wave_web.api.schemas import SearchBody
from wave_web.api.schemas import TagSearch
from wave_web.api.schemas import TagSearchOut
from wave_web.api.schemas import TextSearch
from wave_web.api.schemas import TypeSearchOut
from wave_web.api.schemas import TypeTextSearch

GROUP = "Search"
ERRORS = (400, 422)


def _window(body: SearchBody) -> search.Window:
    return search.Window(body.created_after, body.created_before, body.skip, body.limit)


def _pagination(body: SearchBody, total: int) -> dict[str, int]:
    return {"skip": body.skip, "limit": body.limit, "total": total}


def _page(key: str, shape: Any, found: search.Found, body: SearchBody) -> dict:
    result = {
        key: [shape(item) for item in found.items],
        "total": found.total,
        "pagination": _pagination(body, found.total),
    }
    return result


@endpoint(
    "/search/experiments/by-tags",
    "POST",
    "researcher",
    summary="Experiments with all (or any) of the tags, newest first",
    group=GROUP,
    body=TagSearch,
    response=ExperimentSearchOut,
    errors=ERRORS,
    writes=False,
)
def search_experiments_by_tags(body: TagSearch) -> dict[str, Any]:
    found = search.search_experiments(
        _window(body), tags=body.tags, match_all=body.match_all
    )
    return _page("experiments", shapes.experiment, found, body)


@endpoint(
    "/search/experiment-types/by-description",
    "POST",
    "researcher",
    summary="Experiment types whose name or description contains the text",
    group=GROUP,
    body=TextSearch,
    response=TypeSearchOut,
    errors=ERRORS,
    writes=False,
)
def search_experiment_types(body: TextSearch) -> dict[str, Any]:
    found = search.search_types(body.search_text, _window(body))
    return _page("experiment_types", shapes.experiment_type, found, body)


@endpoint(
    "/search/tags/by-name",
    "POST",
    "researcher",
    summary="Tags whose name or description contains the text",
    group=GROUP,
    body=TextSearch,
    response=TagSearchOut,
    errors=ERRORS,
    writes=False,
)
def search_tags(body: TextSearch) -> dict[str, Any]:
    found = search.search_tags(body.search_text, _window(body))
    return _page("tags", shapes.tag, found, body)


@endpoint(
    "/search/experiments/by-description-and-type",
    "POST",
    "researcher",
    summary="Experiments of one type whose description contains the text",
    group=GROUP,
    body=TypeTextSearch,
    response=ExperimentSearchOut,
    errors=ERRORS,
    writes=False,
)
def search_experiments_by_description(body: TypeTextSearch) -> dict[str, Any]:
    found = search.search_experiments(
        _window(body), text=body.search_text, type_id=body.experiment_type_id
    )
    return _page("experiments", shapes.experiment, found, body)


@endpoint(
    "/search/experiments/advanced",
    "POST",
    "researcher",
    summary="Experiments by text, tags and type combined ({} matches all)",
    group=GROUP,
    body=AdvancedSearch,
    response=ExperimentSearchOut,
    errors=ERRORS,
    writes=False,
)
def search_experiments_advanced(body: AdvancedSearch) -> dict[str, Any]:
    found = search.search_experiments(
        _window(body),
        text=body.search_text,
        tags=body.tags,
        match_all=body.match_all_tags,
        type_id=body.experiment_type_id or None,  # 0 and null: any type
    )
    return _page("experiments", shapes.experiment, found, body)


def _metadata(experiment: Any) -> dict[str, Any]:
    return {
        "experiment_uuid": str(experiment.uuid),
        "experiment_description": experiment.description,
        "experiment_type_name": experiment.experiment_type.name,
        "experiment_tags": list(experiment.tags or []),
    }


@endpoint(
    "/search/experiment-data/by-tags",
    "POST",
    "researcher",
    summary="Data rows of the experiments with the tags, experiment by experiment",
    group=GROUP,
    body=DataTagSearch,
    response=DataSearchOut,
    errors=ERRORS,
    writes=False,
)
def search_experiment_data(body: DataTagSearch) -> dict[str, Any]:
    found = search.data_by_tags(body.tags, body.match_all, _window(body))
    data = [
        {
            **jsonvalues.row_json(e.experiment_type, row),
            "experiment_metadata": _metadata(e),
        }
        for e, row in found.rows
    ]
    info = {
        str(e.uuid): {
            "description": e.description,
            "type_name": e.experiment_type.name,
            "tags": list(e.tags or []),
            "data_count": count,
        }
        for e, count in found.experiments
    }
    return {
        "data": data,
        "total_rows": found.total_rows,
        "total_experiments": len(found.experiments),
        "experiment_info": info,
        "pagination": _pagination(body, found.total_rows),
    }

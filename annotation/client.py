"""The one way to reach Label Studio: its REST API over httpx, with the API token.

Not label-studio-sdk: version 2.1.2 (the one the 1.23.2 server pins) requires
opencv-python-headless < 4.13, and the project pins OpenCV 5 for the detector and training;
it also brings pandas, nltk and a code generator for a dozen calls. The calls used here are
the documented REST endpoints the SDK wraps.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx


class LabelStudioError(ValueError):
    """Label Studio refused a call (one line: its status and reason)."""


class LabelStudio:
    def __init__(self, url: str, token: str, timeout_s: float = 60.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {token}"}, timeout=timeout_s)

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise LabelStudioError(f"Label Studio {method} {path}: HTTP {r.status_code}: {r.text[:300]}")
        return r

    def create_project(self, title: str, label_config: str, **settings) -> int:
        """`settings`: project fields, e.g. `evaluate_predictions_automatically=True` (the
        backend's boxes shown on a task's first opening) or `model_version`."""
        return self._call("POST", "/api/projects", json={"title": title, "label_config": label_config,
                                                         **settings}).json()["id"]

    def project(self, project: int) -> dict:
        return self._call("GET", f"/api/projects/{project}").json()

    def import_tasks(self, project: int, tasks: Iterable[dict]) -> list[int]:
        """Tasks (each `{"data": {...}}`, optionally with `predictions`); returns their ids."""
        tasks = list(tasks)
        if not tasks:
            return []  # Label Studio answers an empty import with an error
        before = set(self.task_ids(project))
        self._call("POST", f"/api/projects/{project}/import", json=tasks)
        return sorted(set(self.task_ids(project)) - before)

    def task_ids(self, project: int) -> list[int]:
        ids, page = [], 1
        while True:
            r = self.http.get("/api/tasks", params={"project": project, "page": page, "page_size": 500,
                                                    "fields": "task_only"})
            if r.status_code == 404:  # past the last page
                break
            if r.status_code >= 400:
                raise LabelStudioError(f"Label Studio GET /api/tasks: HTTP {r.status_code}: {r.text[:300]}")
            body = r.json()
            tasks = body.get("tasks", body) if isinstance(body, dict) else body
            ids += [t["id"] for t in tasks]
            if len(tasks) < 500:
                break
            page += 1
        return ids

    def task(self, task: int) -> dict:
        """A task as the labelling page opens it: with predictions automatic, Label Studio asks the
        ML backend for them now, if the task has none."""
        return self._call("GET", f"/api/tasks/{task}/").json()

    def add_ml_backend(self, project: int, url: str, title: str, user: str, password: str) -> dict:
        return self._call("POST", "/api/ml", json={
            "project": project, "url": url, "title": title, "auth_method": "BASIC_AUTH",
            "basic_auth_user": user, "basic_auth_pass": password, "is_interactive": False}).json()

    def add_webhook(self, project: int, url: str, headers: dict[str, str], actions: list[str]) -> dict:
        return self._call("POST", "/api/webhooks/", json={
            "project": project, "url": url, "headers": headers, "send_payload": True, "send_for_all_actions": False,
            "actions": actions, "is_active": True}).json()

    def annotate(self, task: int, result: list[dict], **fields) -> dict:
        return self._call("POST", f"/api/tasks/{task}/annotations/", json={"result": result, **fields}).json()

    def predictions(self, task: int) -> list[dict]:
        return self._call("GET", "/api/predictions/", params={"task": task}).json()

    def export(self, project: int, all_tasks: bool = False) -> list[dict]:
        """The project's annotated tasks (every task with `all_tasks`) with their annotations, as
        Label Studio's JSON export."""
        params = {"exportType": "JSON", **({"download_all_tasks": "true"} if all_tasks else {})}
        return self._call("GET", f"/api/projects/{project}/export", params=params).json()

    def user(self, user: int) -> dict:
        return self._call("GET", f"/api/users/{user}/").json()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


"""The CI systems' OIDC endpoints: GitHub Actions and Azure Pipelines.

A job asks its CI system for an OIDC token, then hands it to Entra ID as a client
assertion (workload identity federation). Both endpoints live on the emulator's
identity listener and issue tokens signed by the emulator's federation issuer, so
``add_app(federated_subject=...)`` decides which jobs an app trusts.

The wire formats are the real ones, as azure-identity's ``AzurePipelinesCredential``
and GitHub's ``core.getIDToken`` speak them:

- GitHub: ``GET {ACTIONS_ID_TOKEN_REQUEST_URL}&audience=...`` with
  ``Authorization: Bearer {ACTIONS_ID_TOKEN_REQUEST_TOKEN}``; answers
  ``{"count": 1, "value": "<jwt>"}``; a bad request token is 401.
- Azure Pipelines: ``POST {SYSTEM_OIDCREQUESTURI}?api-version=7.1&serviceConnectionId=...``
  with ``Authorization: Bearer {SYSTEM_ACCESSTOKEN}``; answers ``{"oidcToken": "<jwt>"}``.
  The token's subject is ``sc://<org>/<project>/<service connection>`` and its
  audience ``api://AzureADTokenExchange``: Azure DevOps takes no audience parameter.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from requests_ppauth.testing._wire import Request, Response

GITHUB_PATH = "/_github/oidc/token"
PIPELINES_PREFIX = "/_devops/"
PIPELINES_SUFFIX = "/oidctoken"


def pipelines_subject(org: str, project: str, connection: str) -> str:
    """The subject Azure DevOps puts in a service connection's OIDC tokens."""
    return f"sc://{org}/{project}/{connection}"


# (subject, audience, lifetime) -> a signed token from the federation issuer
Mint = Callable[[str, str, int], str]


@dataclass(frozen=True)
class PipelineJob:
    """One Azure Pipelines job: its OIDC request path, the service connections it may
    use (id -> subject) and what the tokens it gets look like."""

    path: str
    connections: dict[str, str]
    audience: str
    lifetime: int


class OidcProviders:
    """The GitHub Actions and Azure Pipelines token endpoints of the emulator."""

    def __init__(self, lock: threading.Lock | threading.RLock) -> None:
        self._lock = lock
        # request token -> (subject, lifetime)
        self._github: dict[str, tuple[str, int]] = {}
        # access token -> job
        self._pipelines: dict[str, PipelineJob] = {}
        # every token the endpoints issued: a leak test looks for them in logs and errors
        self.issued: list[str] = []

    # -- jobs -------------------------------------------------------------------
    def github_job(self, subject: str, lifetime: int, request_token: str | None) -> str:
        """Register a GitHub job; its request token."""
        token = request_token or uuid.uuid4().hex
        with self._lock:
            self._github[token] = (subject, lifetime)
        return token

    def pipelines_job(
        self,
        org: str,
        project: str,
        connection: str,
        *,
        audience: str,
        lifetime: int,
        access_token: str | None,
    ) -> tuple[str, str, str]:
        """Register a pipeline job; its (request path, access token, service connection id)."""
        token = access_token or f"eyJ0eXAiOiJKV1Qi.{uuid.uuid4().hex}.{uuid.uuid4().hex}"
        plan, job_id, project_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        path = (
            f"{PIPELINES_PREFIX}{org}/{project_id}/_apis/distributedtask/hubs/build/plans/"
            f"{plan}/jobs/{job_id}{PIPELINES_SUFFIX}"
        )
        subject = pipelines_subject(org, project, connection)
        connection_id = str(uuid.uuid5(uuid.NAMESPACE_URL, subject))
        job = PipelineJob(path, {connection_id: subject}, audience, lifetime)
        with self._lock:
            self._pipelines[token] = job
        return path, token, connection_id

    # -- routing ----------------------------------------------------------------
    @staticmethod
    def endpoint(path: str) -> str | None:
        """``github_oidc``, ``pipelines_oidc`` or None (not one of ours)."""
        if path == GITHUB_PATH:
            return "github_oidc"
        if path.startswith(PIPELINES_PREFIX) and path.endswith(PIPELINES_SUFFIX):
            return "pipelines_oidc"
        return None

    def handle(self, req: Request, mint: Mint) -> Response:
        """Answer one request to either endpoint (``req.endpoint`` already set)."""
        if req.endpoint == "github_oidc":
            return self._github_oidc(req, mint)
        return self._pipelines_oidc(req, mint)

    def _github_oidc(self, req: Request, mint: Mint) -> Response:
        """GitHub's token endpoint: ``GET`` with the job's bearer request token. The
        audience asked for is recorded as the request's ``scope``."""
        req.notes["scope"] = req.query.get("audience")
        with self._lock:
            job = self._github.get(req.bearer() or "")
        if req.method != "GET" or job is None:
            return Response.json(401, {"message": "Bad credentials"})
        subject, lifetime = job
        # without one, GitHub's audience is the URL of the repository's owner
        owner = subject.removeprefix("repo:").split("/", 1)[0]
        audience = req.query.get("audience") or f"https://github.com/{owner}"
        return Response.json(
            200, {"count": 1, "value": self._issue(mint, subject, audience, lifetime)}
        )

    def _pipelines_oidc(self, req: Request, mint: Mint) -> Response:
        """Azure DevOps' ``oidctoken`` endpoint, as the distributed task hub answers it."""
        connection_id = req.query.get("serviceConnectionId", "")
        req.notes["service_connection_id"] = connection_id
        with self._lock:
            job = self._pipelines.get(req.bearer() or "")
        if job is None or job.path != req.path:
            # what Azure DevOps answers an unknown or expired System.AccessToken
            return Response(
                401,
                b"Access Denied: the caller is not authenticated",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
        if req.method != "POST":
            return _devops_error(
                405, f"The requested resource does not support http method '{req.method}'."
            )
        if not req.query.get("api-version"):
            return _devops_error(400, "No api-version was supplied for the request.")
        subject = job.connections.get(connection_id)
        if subject is None:
            return _devops_error(
                404,
                f"Service connection with id '{connection_id}' was not found or the "
                "pipeline is not authorized to use it.",
            )
        req.notes["scope"] = job.audience
        token = self._issue(mint, subject, job.audience, job.lifetime)
        return Response.json(200, {"oidcToken": token})

    def _issue(self, mint: Mint, subject: str, audience: str, lifetime: int) -> str:
        """A new token, remembered in ``issued``."""
        value = mint(subject, audience, lifetime)
        with self._lock:
            self.issued.append(value)
        return value


def _devops_error(status: int, message: str) -> Response:
    """Azure DevOps' error body (``$id``, ``message``, ``typeKey``)."""
    return Response.json(
        status,
        {
            "$id": "1",
            "innerException": None,
            "message": message,
            "typeName": "Microsoft.TeamFoundation.DistributedTask.WebApi."
            "TaskOrchestrationException",
            "typeKey": "TaskOrchestrationException",
            "errorCode": 0,
            "eventId": 3000,
        },
    )

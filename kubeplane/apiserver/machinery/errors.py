"""API errors as upstream `Status` objects (metav1.Status).

Raise `APIError` anywhere below the HTTP layer; app.py turns it into the response. The
helpers mirror k8s.io/apimachinery/pkg/api/errors, message texts included, because
clients (and people) match on them.

`details` follows upstream's constructors exactly: None (no `details` key) for those that
leave StatusDetails nil (BadRequest, Unauthorized, Gone, Expired, RequestEntityTooLarge,
UnsupportedMediaType), `{}` for NewGenericServerResponse's empty details (an unknown
resource or subresource of a served group, 405, 406), and name/group/kind/causes/
retryAfterSeconds where upstream sets them. Clients dereference `details` when present in
upstream's answer (kubectl debug reads `details.name` of a NotFound), so an empty dict is
written as `"details":{}`, not left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Cause:
    """One field error: reason is upstream's CauseType (FieldValueRequired, FieldValueInvalid,
    FieldValueNotSupported, FieldValueDuplicate, FieldValueTooLong, FieldValueForbidden,
    FieldValueTypeInvalid, FieldManagerConflict, ...); `detail` is the text after the field."""
    reason: str
    field: str
    detail: str

    # upstream's field.Error.ErrorBody() prefixes: "Required value", "Invalid value: ...".
    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.detail, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": self.message, "reason": self.reason}
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(name: str | None, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    d.update(extra)
    return d


def not_found(group: str, resource: str, name: str) -> APIError:
    q = f"{resource}.{group}" if group else resource
    return APIError(404, "NotFound", f'{q} "{name}" not found', _details(name, group, resource))


def already_exists(group: str, resource: str, name: str) -> APIError:
    q = f"{resource}.{group}" if group else resource
    return APIError(409, "AlreadyExists", f'{q} "{name}" already exists',
                    _details(name, group, resource))


def generate_name_conflict(group: str, resource: str, name: str) -> APIError:
    """upstream NewGenerateNameConflict: every generated name was taken."""
    q = f"{resource}.{group}" if group else resource
    return APIError(409, "AlreadyExists", f'{q} "{name}" already exists, the server was not able to generate a '
                    "unique name for the object", _details(name, group, resource, retryAfterSeconds=1))


def conflict(group: str, resource: str, name: str, why: str) -> APIError:
    q = f"{resource}.{group}" if group else resource
    return APIError(409, "Conflict", f'Operation cannot be fulfilled on {q} "{name}": {why}',
                    _details(name, group, resource))


OPTIMISTIC_LOCK = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> APIError:
    """422 Invalid; the message lists the causes like upstream's NewInvalid."""
    if len(causes) == 1:
        msg = f'{kind}{"." + group if group else ""} "{name}" is invalid: {causes[0]}'
    else:
        msg = f'{kind}{"." + group if group else ""} "{name}" is invalid: [{", ".join(map(str, causes))}]'
    return APIError(422, "Invalid", msg,
                    _details(name, group, kind, causes=[c.as_dict() for c in causes]))


NO_RESOURCE = "the server could not find the requested resource"


def unknown_resource() -> APIError:
    """404 for a path under a served group that names no resource, version or subresource
    (upstream's go-restful container: NewGenericServerResponse, `details: {}`). A path
    outside every served group is plain text instead (app.PAGE_NOT_FOUND)."""
    return APIError(404, "NotFound", NO_RESOURCE, {})


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message, {})


def not_acceptable(available: str) -> APIError:
    """406 as go-restful answers an Accept that no route produces (upstream writes it
    indented, without the trailing newline: app._error_response)."""
    return APIError(406, "NotAcceptable", f"406: Not Acceptable\n\nAvailable representations: {available}", {})


def unsupported_media_type(accepted: str) -> APIError:
    """415, upstream's negotiation.NewUnsupportedMediaTypeError: no details."""
    return APIError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: {accepted}")


def too_large(message: str = "the request body is too large") -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: {message}")


def gone(message: str) -> APIError:
    return APIError(410, "Gone", message)


def expired(message: str, cont: str | None = None) -> APIError:
    e = APIError(410, "Expired", message)
    e.continue_token = cont  # type: ignore[attr-defined]
    return e


def forbidden(group: str, resource: str, name: str, why: str) -> APIError:
    q = f"{resource}.{group}" if group else resource
    msg = f'{q} "{name}" is forbidden: {why}' if name else f"{q} is forbidden: {why}"
    return APIError(403, "Forbidden", msg, _details(name, group, resource))


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def timeout(message: str, retry_after: int = 0) -> APIError:
    """upstream NewTimeoutError: "Timeout: <message>", details with retryAfterSeconds
    (left out when 0, as Go's omitempty does)."""
    return APIError(504, "Timeout", f"Timeout: {message}", {"retryAfterSeconds": retry_after} if retry_after else {})


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")

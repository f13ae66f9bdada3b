"""Objects of the simulated cluster: CRUD, one global resourceVersion, watch fan-out.

Behaves like etcd behind kube-apiserver as far as clients can tell:

- every write takes the next value of one cluster-wide counter as its
  ``resourceVersion`` (so versions from different resources compare);
- the last ``history_size`` events are kept; a watch may start from any version
  still covered by them, an older one is ``410 Gone``;
- stored dicts are never mutated in place: every write stores a fresh dict, so
  readers (lists, watch events) can share them without copying.  Methods for
  in-process callers (``put``, ``get``, ``delete``) copy at the boundary.

Errors are raised as ``clustergateway.errors`` Status exceptions.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from clustergateway.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    StatusError,
    UnprocessableEntity,
)
from clustergateway.testing.kinds import DEFAULT_TYPES, ResourceType, ResourceTypes
from clustergateway.testing.selectors import (
    FieldRequirement,
    LabelRequirement,
    matches_fields,
    matches_labels,
)

__all__ = ["ListPage", "ObjectStore", "WatchEvent", "Subscription"]

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Object = dict[str, Any]
ObjectList = list[Object]  # named here: ObjectStore.list shadows the builtin in the class

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@attrs.frozen
class WatchEvent:
    """One change, as a watch stream reports it."""

    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    rtype: ResourceType
    object: Object
    #: The object before this change (MODIFIED only), for selector transitions.
    previous: Object | None = None

    @property
    def namespace(self) -> str:
        return str(self.object.get("metadata", {}).get("namespace", ""))


@attrs.frozen
class ListPage:
    """One page of a list: items, the list's resourceVersion, and the continue token."""

    items: list[Object]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@attrs.define(eq=False)
class Subscription:
    """A live watch registration; ``cancel()`` stops delivery."""

    store: ObjectStore
    rtype: ResourceType
    callback: Callable[[WatchEvent], None]

    def cancel(self) -> None:
        self.store._unsubscribe(self)


def _spec_of(obj: Object) -> Object:
    """What ``metadata.generation`` counts changes of: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(kind: str, name: str, field: str, value: Any, detail: str) -> UnprocessableEntity:
    message = f'{kind} "{name}" is invalid: {field}: Invalid value: {json.dumps(value)}: {detail}'
    return UnprocessableEntity(
        message,
        {
            "name": name,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        },
    )


def _check_name(rtype: ResourceType, name: str) -> None:
    if rtype.group == "rbac.authorization.k8s.io":
        # RBAC names are path segments (``system:auth-delegator``), as in kube-apiserver.
        ok = bool(name) and name not in (".", "..") and not any(c in name for c in "/%")
        detail = "may not be '.' or '..' and may not contain '/' or '%'"
    elif rtype.resource == "namespaces":
        ok = len(name) <= 63 and bool(_DNS_LABEL.match(name))
        detail = (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters"
            " or '-', and must start and end with an alphanumeric character"
        )
    else:
        ok = len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))
        detail = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"
            " characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    if not ok:
        raise _invalid(rtype.kind, name, "metadata.name", name, detail)


def _check_string_map(rtype: ResourceType, name: str, obj: Object, field: str) -> None:
    value = obj.get(field)
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(rtype.kind, name, field, "", "must be a map of strings to strings")


def _normalize_secret(name: str, obj: Object) -> None:
    """Fold ``stringData`` into base64 ``data`` and check ``data`` is base64."""
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        raise _invalid("Secret", name, "data", "", "must be a map")
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise BadRequest(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data'
                f" at key {key!r}"
            ) from e
    string_data = obj.pop("stringData", None) or {}
    if not isinstance(string_data, dict):
        raise _invalid("Secret", name, "stringData", "", "must be a map of strings")
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data
    if not obj.get("type"):
        obj["type"] = "Opaque"


def _default_pod(obj: Object) -> None:
    """A created pod is scheduled and running at once, every container ready."""
    spec = obj.setdefault("spec", {})
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise _invalid(
            "Pod",
            obj["metadata"]["name"],
            "spec.containers",
            [],
            "Required value",
        )
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("nodeName", "sim-node")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    started = obj["metadata"]["creationTimestamp"]
    status = obj.get("status") or {}
    if not status.get("phase"):
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "10.0.0.10",
            "podIPs": [{"ip": "10.0.0.10"}],
            "startTime": started,
            "qosClass": "BestEffort",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": started}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started}},
                }
                for c in containers
                if isinstance(c, dict)
            ],
        }
    obj["status"] = status


def _default_namespace(obj: Object) -> None:
    name = obj["metadata"]["name"]
    labels = obj["metadata"].setdefault("labels", {})
    labels.setdefault("kubernetes.io/metadata.name", name)
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj.setdefault("status", {"phase": "Active"})


def _encode_continue(resource_version: int, key: Key) -> str:
    raw = json.dumps({"rv": resource_version, "start": list(key)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, Key]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        ns, name = data["start"]
        return int(data["rv"]), (str(ns), str(name))
    except (ValueError, KeyError, TypeError) as e:
        raise BadRequest(
            "continue key is not valid: incorrect encoded start resourceVersion"
        ) from e


@attrs.define
class ObjectStore:
    """All objects of the cluster, their history, and the live watches on them."""

    types: ResourceTypes = DEFAULT_TYPES
    history_size: int = 1000
    _revision: int = 0
    _objects: dict[ResourceType, dict[Key, Object]] = attrs.field(factory=dict)
    _history: deque[WatchEvent] = attrs.field(init=False)
    #: Versions at or below this one have left the history window.
    _compacted: int = 0
    _subscribers: dict[ResourceType, list[Subscription]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self._history = deque()

    # -- versions and history ----------------------------------------------------

    @property
    def revision(self) -> int:
        """The newest resourceVersion handed out."""
        return self._revision

    @property
    def compacted_revision(self) -> int:
        """Watches must start at or after this version."""
        return self._compacted

    def _record(
        self, event_type: str, rtype: ResourceType, obj: Object, previous: Object | None = None
    ) -> None:
        event = WatchEvent(
            int(obj["metadata"]["resourceVersion"]), event_type, rtype, obj, previous
        )
        self._history.append(event)
        while len(self._history) > self.history_size:
            self._compacted = self._history.popleft().resource_version
        for sub in list(self._subscribers.get(rtype, ())):
            sub.callback(event)

    def events_since(self, rtype: ResourceType, resource_version: int) -> list[WatchEvent]:
        """Events of ``rtype`` after ``resource_version``; ``Gone`` when compacted."""
        if resource_version < self._compacted:
            raise Gone(f"too old resource version: {resource_version} ({self._compacted + 1})")
        return [
            e for e in self._history if e.rtype == rtype and e.resource_version > resource_version
        ]

    def subscribe(
        self, rtype: ResourceType, callback: Callable[[WatchEvent], None]
    ) -> Subscription:
        """Call ``callback`` synchronously with every later event of ``rtype``."""
        sub = Subscription(self, rtype, callback)
        self._subscribers.setdefault(rtype, []).append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.rtype, [])
        if sub in subs:
            subs.remove(sub)

    def watcher_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    # -- reads ---------------------------------------------------------------------

    def _bucket(self, rtype: ResourceType) -> dict[Key, Object]:
        return self._objects.setdefault(rtype, {})

    def lookup(self, rtype: ResourceType, namespace: str, name: str) -> Object:
        """The stored object (shared, do not mutate) or ``NotFound``."""
        obj = self._bucket(rtype).get((namespace if rtype.namespaced else "", name))
        if obj is None:
            raise NotFound.for_object(rtype.resource, rtype.group, name, rtype.kind)
        return obj

    def exists(self, rtype: ResourceType, namespace: str, name: str) -> bool:
        return (namespace if rtype.namespaced else "", name) in self._bucket(rtype)

    def list(
        self,
        rtype: ResourceType,
        namespace: str = "",
        *,
        labels: tuple[LabelRequirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
        limit: int = 0,
        continue_token: str = "",
    ) -> ListPage:
        """Objects of ``rtype`` (in ``namespace`` if given) in key order, paginated."""
        revision = self._revision
        start: Key | None = None
        if continue_token:
            revision, start = _decode_continue(continue_token)
            if revision < self._compacted:
                raise Gone(
                    "The provided continue parameter is too old to display a consistent list"
                    " result. You can start a new list without the continue parameter."
                )
        selected: list[tuple[Key, Object]] = []
        for key in sorted(self._bucket(rtype)):
            if namespace and rtype.namespaced and key[0] != namespace:
                continue
            if start is not None and key <= start:
                continue
            obj = self._bucket(rtype)[key]
            if matches_labels(labels, obj) and matches_fields(fields, obj):
                selected.append((key, obj))
        if limit > 0 and len(selected) > limit:
            page = selected[:limit]
            token = _encode_continue(revision, page[-1][0])
            return ListPage([o for _, o in page], revision, token, len(selected) - limit)
        return ListPage([o for _, o in selected], revision)

    # -- writes --------------------------------------------------------------------

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def _check_kind(self, rtype: ResourceType, obj: Object) -> None:
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if api_version and api_version != rtype.api_version or kind and kind != rtype.kind:
            raise BadRequest(
                f"the API version in the data ({api_version}) does not match the expected"
                f" API version ({rtype.api_version})"
                if api_version != rtype.api_version
                else f"Object kind {kind!r} does not match {rtype.kind!r}"
            )

    def _prepare(self, rtype: ResourceType, namespace: str, obj: Object) -> Object:
        """A fresh copy of ``obj`` with type fields, namespace and content checked."""
        if not isinstance(obj, dict):
            raise BadRequest(f"the body of a {rtype.kind} must be a JSON object")
        self._check_kind(rtype, obj)
        fresh = copy.deepcopy(obj)
        fresh["apiVersion"] = rtype.api_version
        fresh["kind"] = rtype.kind
        meta = fresh.get("metadata")
        if meta is None:
            meta = fresh["metadata"] = {}
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be a JSON object")
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request"
                )
            namespace = namespace or body_ns or ""
            if not namespace:
                raise BadRequest("the namespace of the object is not set")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("labels", "annotations"):
            if meta.get(field) is not None:
                _check_string_map(rtype, str(meta.get("name", "")), meta, field)
        return fresh

    def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if rtype.namespaced and not self.exists(self.types.resolve("namespaces"), "", namespace):
            raise NotFound.for_object("namespaces", "", namespace, "Namespace")

    def _apply_type_rules(self, rtype: ResourceType, obj: Object) -> None:
        name = obj["metadata"]["name"]
        if rtype.group == "" and rtype.resource == "configmaps":
            _check_string_map(rtype, name, obj, "data")
        elif rtype.group == "" and rtype.resource == "secrets":
            _normalize_secret(name, obj)
        elif rtype.group == "" and rtype.resource == "pods":
            _default_pod(obj)
        elif rtype.group == "" and rtype.resource == "namespaces":
            _default_namespace(obj)

    def _generate_name(self, rtype: ResourceType, namespace: str, prefix: str) -> str:
        for _ in range(100):
            suffix = "".join(
                _GENERATE_ALPHABET[b % len(_GENERATE_ALPHABET)] for b in uuid.uuid4().bytes[:5]
            )
            name = f"{prefix}{suffix}"
            if not self.exists(rtype, namespace, name):
                return name
        raise AlreadyExists(f"could not generate a unique name from {prefix!r}")

    def create(
        self, rtype: ResourceType, namespace: str, obj: Object, *, dry_run: bool = False
    ) -> Object:
        """Store a new object; returns it with uid, timestamps and resourceVersion."""
        fresh = self._prepare(rtype, namespace, obj)
        meta = fresh["metadata"]
        namespace = meta.get("namespace", "")
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise _invalid(
                    rtype.kind, "", "metadata.name", "", "name or generateName is required"
                )
            name = meta["name"] = self._generate_name(rtype, namespace, str(prefix))
        if not isinstance(name, str):
            raise BadRequest("metadata.name must be a string")
        _check_name(rtype, name)
        self._check_namespace(rtype, namespace)
        if self.exists(rtype, namespace, name):
            raise AlreadyExists(
                f'{rtype.group_resource} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.resource},
            )
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if rtype.generation:
            meta["generation"] = 1
        for transient in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(transient, None)
        self._apply_type_rules(rtype, fresh)
        if dry_run:
            meta["resourceVersion"] = str(self._revision)
            return fresh
        meta["resourceVersion"] = str(self._next_revision())
        self._bucket(rtype)[(namespace if rtype.namespaced else "", name)] = fresh
        self._record("ADDED", rtype, fresh)
        return fresh

    def update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        obj: Object,
        *,
        dry_run: bool = False,
        subresource: str = "",
    ) -> Object:
        """Replace an object (PUT); a stale ``resourceVersion`` is a 409 Conflict."""
        current = self.lookup(rtype, namespace, name)
        fresh = self._prepare(rtype, namespace, obj)
        meta = fresh["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL"
                f" ({name})"
            )
        wanted = meta.get("resourceVersion")
        have = current["metadata"]["resourceVersion"]
        if wanted and wanted != have:
            raise Conflict(
                f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": the object'
                " has been modified; please apply your changes to the latest version and try"
                " again",
                {"name": name, "group": rtype.group, "kind": rtype.resource},
            )
        meta["name"] = name
        for kept in ("uid", "creationTimestamp"):
            meta[kept] = current["metadata"][kept]
        if subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = fresh.get("status")
            fresh = merged
        elif rtype.subresource("status") is not None and "status" in current:
            fresh["status"] = copy.deepcopy(current["status"])
        if rtype.generation and subresource != "status":
            generation = int(current["metadata"].get("generation") or 1)
            if _spec_of(fresh) != _spec_of(current):
                generation += 1
            fresh["metadata"]["generation"] = generation
        self._apply_type_rules(rtype, fresh)
        return self._replace(rtype, fresh, dry_run=dry_run)

    def _replace(self, rtype: ResourceType, fresh: Object, *, dry_run: bool) -> Object:
        meta = fresh["metadata"]
        key = (meta.get("namespace", "") if rtype.namespaced else "", meta["name"])
        current = self._bucket(rtype)[key]
        unchanged = {**current, "metadata": {**current["metadata"], "resourceVersion": ""}} == {
            **fresh,
            "metadata": {**meta, "resourceVersion": ""},
        }
        if dry_run or unchanged:
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return fresh
        meta["resourceVersion"] = str(self._next_revision())
        self._bucket(rtype)[key] = fresh
        self._record("MODIFIED", rtype, fresh, current)
        return fresh

    def delete(
        self,
        ref: str | ResourceType,
        namespace: str | None,
        name: str,
        *,
        dry_run: bool = False,
        preconditions: dict[str, Any] | None = None,
    ) -> Object:
        """Remove an object at once (no finalizers); returns it as last stored.

        ``ref`` is a type or any name :meth:`ResourceTypes.resolve` accepts;
        ``NotFound`` when absent (see :meth:`remove` for the lenient form).
        """
        rtype = self._type_of(ref)
        namespace = namespace or ""
        current = self.lookup(rtype, namespace, name)
        meta = current["metadata"]
        for field in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(field):
                raise Conflict(
                    f"Precondition failed: {field} in precondition: {wanted}, {field} in object"
                    f" meta: {meta.get(field)}",
                    {"name": name, "group": rtype.group, "kind": rtype.resource},
                )
        if dry_run:
            return current
        if rtype.group == "" and rtype.resource == "namespaces":
            for other in self.types:
                if other.namespaced:
                    for key in [k for k in self._bucket(other) if k[0] == name]:
                        self.delete(other, key[0], key[1])
        del self._bucket(rtype)[(namespace if rtype.namespaced else "", name)]
        gone = copy.copy(current)
        gone["metadata"] = {**meta, "resourceVersion": str(self._next_revision())}
        self._record("DELETED", rtype, gone)
        return gone

    # -- in-process convenience (tests, bench, demo) --------------------------------

    def _type_of(self, ref: str | ResourceType) -> ResourceType:
        return ref if isinstance(ref, ResourceType) else self.types.resolve(ref)

    def put(self, obj: Object) -> Object:
        """Create or replace ``obj`` (found by its apiVersion/kind); emits watch events.

        Namespaces a namespaced object needs are created on the way.  Returns a
        copy of the stored object.
        """
        rtype = self.types.for_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if rtype is None:
            raise KeyError(f"no served type for {obj.get('apiVersion')}/{obj.get('kind')}")
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or ("default" if rtype.namespaced else ""))
        if rtype.namespaced and not self.exists(self.types.resolve("namespaces"), "", namespace):
            self.create(self.types.resolve("namespaces"), "", {"metadata": {"name": namespace}})
        name = str(meta.get("name", ""))
        if name and self.exists(rtype, namespace, name):
            body = copy.deepcopy(obj)
            body["metadata"].pop("resourceVersion", None)
            stored = self.update(rtype, namespace, name, body)
            if rtype.subresource("status") is not None and "status" in obj:
                stored = self.update(rtype, namespace, name, body, subresource="status")
            return copy.deepcopy(stored)
        return copy.deepcopy(self.create(rtype, namespace, obj))

    def get(self, ref: str | ResourceType, namespace: str | None, name: str) -> Object | None:
        """A copy of the object, or None when there is none."""
        rtype = self._type_of(ref)
        try:
            return copy.deepcopy(self.lookup(rtype, namespace or "", name))
        except StatusError:
            return None

    def remove(self, ref: str | ResourceType, namespace: str | None, name: str) -> bool:
        """Delete if present; True when something was deleted."""
        rtype = self._type_of(ref)
        if not self.exists(rtype, namespace or "", name):
            return False
        self.delete(rtype, namespace or "", name)
        return True

    def items(self, ref: str | ResourceType, namespace: str | None = None) -> ObjectList:
        """Copies of every object of a type (optionally in one namespace)."""
        rtype = self._type_of(ref)
        return copy.deepcopy(self.list(rtype, namespace or "").items)

    def load(self, objects: Iterable[Object]) -> None:
        """``put`` each object in order."""
        for obj in objects:
            self.put(obj)

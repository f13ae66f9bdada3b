"""The installer reconcile of spec §6.2: one level-triggered pass, safe to repeat.

:meth:`Installer.reconcile` reads the ClusterManagementAddOn ``cluster-gateway``
and the ClusterGatewayConfiguration it names, and makes the hub hold every
object of Go's ``ClusterGatewayInstaller`` in the same order: namespaces, the
copied proxy client Secrets, ManagedServiceAccounts and their token copies,
the serving certificate, ServiceAccount, Service, RBAC, APIService (whose
``caBundle`` is re-applied whenever it differs) and the gateway Deployment.

Level-triggered and idempotent: every step compares what the hub holds with
what :mod:`clustergateway.addon.desired` computes and writes only a
difference, so a second pass changes nothing (no write, no new
resourceVersion) and a deleted object is created again.  Where Go only creates
if absent, this pass also repairs the fields it owns (``spec``, ``rules``,
``roleRef``, ``subjects``, labels, owners) when someone edits them, leaving
fields the apiserver fills in (``clusterIP``, defaults) alone; the Deployment
follows Go's rule (rewritten when the configuration's generation changes, or
when it is gone), so a manual scale survives until the configuration changes.

Bad input never leaves a half-applied install: the configuration is parsed
and checked, the proxy client Secrets read and the ManagedServiceAccount API
looked up before the first write; any failure there becomes the
``ClusterGatewayDeployed`` condition (False, with the cause) on the
configuration and one log line, and nothing is written.  Per-cluster work
(ManagedServiceAccount, token copy) fails per cluster: the others proceed and
the ``ClusterCredentialsCopied`` condition names the clusters still waiting.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from twisted.logger import Logger

from clustergateway import errors
from clustergateway.addon import desired
from clustergateway.addon.configuration import (
    AddonReference,
    ConfigurationError,
    GatewayConfiguration,
    addon_reference,
)
from clustergateway.addon.names import (
    ADDON_API_VERSION,
    ADDON_NAME,
    CGC_API_VERSION,
    DEPLOYMENT_NAME,
    GENERATION_LABEL,
    MSA_API_VERSION,
    TLS_SECRET_NAME,
)
from clustergateway.addon.pki import PkiError, Signer, rotation_reason, serving_secret
from clustergateway.addon.resources import (
    HubApi,
    collection_path,
    merged,
    object_path,
    subset,
)

__all__ = [
    "CONDITION_CREDENTIALS",
    "CONDITION_DEPLOYED",
    "HubApi",
    "InstallOutcome",
    "Installer",
    "utc_now",
]

CONDITION_DEPLOYED = "ClusterGatewayDeployed"
CONDITION_CREDENTIALS = "ClusterCredentialsCopied"
#: Top-level fields of an owned object the installer keeps as it wants them.
_OWNED_FIELDS = ("spec", "rules", "roleRef", "subjects")


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen
class InstallOutcome:
    """What one pass did: ``state`` is ``skipped``, ``failed`` or ``installed``."""

    state: str
    message: str = ""
    #: Paths written (created or updated) in this pass.
    writes: tuple[str, ...] = ()
    #: Clusters whose token copy is waiting (no token Secret yet) or failed.
    waiting: tuple[str, ...] = ()


class _Writes:
    def __init__(self) -> None:
        self.paths: list[str] = []


async def _get(client: HubApi, path: str) -> dict[str, Any] | None:
    try:
        return await client.get_json(path)
    except errors.NotFound:
        return None


def _condition(
    type_: str, ok: bool, reason: str, message: str, generation: int, now: datetime.datetime
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def with_conditions(
    status: Mapping[str, Any] | None, conditions: list[dict[str, Any]], generation: int
) -> dict[str, Any] | None:
    """``status`` with ``conditions`` set (transition times kept when the status is the
    same), or None when nothing would change (so a steady state writes nothing)."""
    current = dict(status or {})
    existing = {c.get("type"): c for c in current.get("conditions") or []}
    merged_conditions = [
        c
        for c in current.get("conditions") or []
        if c.get("type") not in {n["type"] for n in conditions}
    ]
    changed = current.get("lastObservedGeneration") != generation
    for new in conditions:
        old = existing.get(new["type"])
        if old is not None and old.get("status") == new["status"]:
            new = {**new, "lastTransitionTime": old.get("lastTransitionTime")}
        if old is None or any(old.get(k) != new[k] for k in new):
            changed = True
        merged_conditions.append(new)
    if not changed:
        return None
    current["conditions"] = merged_conditions
    current["lastObservedGeneration"] = generation
    return current


@attrs.define(eq=False)
class Installer:
    """One reconcile pass at a time; build once and call :meth:`reconcile` on every trigger."""

    client: HubApi
    #: Where the signer Secret lives (the manager's own namespace, Go's ``NAMESPACE``).
    namespace: str
    signer_secret_name: str = "cluster-gateway-signer"
    now: Callable[[], datetime.datetime] = utc_now
    #: Secret names a pass reads besides owned objects (signer, proxy sources, MSA
    #: token): their events must trigger a pass too.
    secret_names: set[str] = attrs.field(factory=set, init=False)
    _log: ClassVar[Logger] = Logger()

    # -- the signer ----------------------------------------------------------------

    async def ensure_signer(self) -> Signer:
        """Go's ``EnsureCAPair``: read the signer Secret, or create it when absent.

        Read on every pass (Go reads it once at startup), so a signer replaced or
        deleted on the hub is followed: the serving pair is reissued by the new CA
        and the APIService ``caBundle`` moves with it in the same pass.
        """
        path = collection_path("v1", "Secret", self.namespace) + f"/{self.signer_secret_name}"
        secret = await _get(self.client, path)
        if secret is None:
            signer = Signer.generate(self.now())
            await self._ensure_namespace(self.namespace, _Writes())
            try:
                await self.client.post_json(
                    collection_path("v1", "Secret", self.namespace),
                    signer.secret(self.namespace, self.signer_secret_name),
                )
            except errors.AlreadyExists:  # another replica won: use theirs
                secret = await self.client.get_json(path)
                signer = Signer.from_secret(secret)
            self._log.info(
                "Created signer CA {namespace}/{name}",
                namespace=self.namespace,
                name=self.signer_secret_name,
            )
        else:
            signer = Signer.from_secret(secret)
        return signer

    # -- the pass --------------------------------------------------------------------

    async def reconcile(self) -> InstallOutcome:
        """One pass; never raises for bad input (it becomes a condition), only for the hub."""
        cma = await _get(
            self.client,
            collection_path(ADDON_API_VERSION, "ClusterManagementAddOn") + f"/{ADDON_NAME}",
        )
        addon = addon_reference(cma) if cma is not None else None
        if addon is None:
            return InstallOutcome("skipped", "no ClusterManagementAddOn cluster-gateway for us")
        cgc_path = (
            collection_path(CGC_API_VERSION, "ClusterGatewayConfiguration")
            + f"/{addon.configuration_name}"
        )
        cgc = await _get(self.client, cgc_path) if addon.configuration_name else None
        if cgc is None:
            message = f"no such configuration: {addon.configuration_name}"
            self._log.warn("Not installing: {message}", message=message)
            return InstallOutcome("failed", message)
        generation = int((cgc.get("metadata") or {}).get("generation") or 0)
        try:
            config = GatewayConfiguration.from_object(cgc)
            self.secret_names = {
                self.signer_secret_name,
                TLS_SECRET_NAME,
                config.managed_service_account_name,
            }
            if config.cluster_proxy is not None:
                self.secret_names |= {
                    config.cluster_proxy.ca_secret_name,
                    config.cluster_proxy.client_secret_name,
                }
            sources = await self._gather(config)
            signer = await self.ensure_signer()
        except (ConfigurationError, PkiError) as e:
            reason = e.reason if isinstance(e, ConfigurationError) else "InvalidSigner"
            self._log.error(
                "Not installing configuration {name}: {reason}: {message}",
                name=addon.configuration_name,
                reason=reason,
                message=str(e),
            )
            await self._set_status(
                cgc,
                generation,
                [_condition(CONDITION_DEPLOYED, False, reason, str(e), generation, self.now())],
            )
            return InstallOutcome("failed", str(e))
        writes = _Writes()
        await self._ensure_namespace(config.install_namespace, writes)
        await self._ensure_namespace(config.secret_namespace, writes)
        for source in sources:
            await self._copy_secret(source, config.install_namespace, writes)
        waiting: list[str] = []
        if config.secret_management == "ManagedServiceAccount":
            waiting = await self._secret_management(addon, config, writes)
        await self._ensure_serving_cert(config.install_namespace, signer, writes)
        for obj in desired.installed_objects(addon, config, signer.cert_pem):
            await self._ensure(obj, writes)
        await self._ensure_deployment(addon, config, writes)
        conditions = [
            _condition(
                CONDITION_DEPLOYED,
                True,
                "Deployed",
                f"gateway {config.install_namespace}/{DEPLOYMENT_NAME} at generation {generation}",
                generation,
                self.now(),
            )
        ]
        if config.secret_management == "ManagedServiceAccount":
            if waiting:
                message = (
                    f"no token Secret {config.managed_service_account_name} yet (or copy failed)"
                    f" for cluster(s): {', '.join(waiting)}"
                )
                conditions.append(
                    _condition(
                        CONDITION_CREDENTIALS,
                        False,
                        "TokenMissing",
                        message,
                        generation,
                        self.now(),
                    )
                )
            else:
                conditions.append(
                    _condition(
                        CONDITION_CREDENTIALS,
                        True,
                        "Copied",
                        "every cluster's ManagedServiceAccount token is copied",
                        generation,
                        self.now(),
                    )
                )
        await self._set_status(cgc, generation, conditions)
        if writes.paths:
            self._log.info(
                "Installed configuration {name}: {count} object(s) written",
                name=config.name,
                count=len(writes.paths),
            )
        return InstallOutcome("installed", "", tuple(writes.paths), tuple(waiting))

    async def _gather(self, config: GatewayConfiguration) -> list[dict[str, Any]]:
        """Everything that must exist before the first write; the proxy Secrets to copy."""
        sources: list[dict[str, Any]] = []
        if config.cluster_proxy is not None:
            proxy = config.cluster_proxy
            for name in (proxy.ca_secret_name, proxy.client_secret_name):
                path = collection_path("v1", "Secret", proxy.credentials_namespace) + f"/{name}"
                secret = await _get(self.client, path)
                if secret is None:
                    raise ConfigurationError(
                        f"proxy client Secret {proxy.credentials_namespace}/{name} not found",
                        "MissingSecret",
                    )
                sources.append(secret)
        if config.secret_management == "ManagedServiceAccount":
            try:
                await self.client.get_json(f"/apis/{MSA_API_VERSION}")
            except errors.NotFound:
                raise ConfigurationError(
                    "failed to discover ManagedServiceAccount resource in the cluster",
                    "MissingManagedServiceAccountAPI",
                ) from None
        return sources

    async def _set_status(
        self, cgc: Mapping[str, Any], generation: int, conditions: list[dict[str, Any]]
    ) -> None:
        status = with_conditions(cgc.get("status"), conditions, generation)
        if status is None:
            return
        body = {**cgc, "status": status}
        try:
            await self.client.put_json(object_path(cgc) + "/status", body)
        except errors.Conflict:
            pass  # the configuration changed meanwhile: its event brings the next pass

    # -- steps -----------------------------------------------------------------------

    async def _create(self, obj: Mapping[str, Any], writes: _Writes) -> None:
        meta = obj["metadata"]
        path = collection_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        try:
            await self.client.post_json(path, obj)
        except errors.AlreadyExists:
            return
        writes.paths.append(object_path(obj))

    async def _ensure_namespace(self, name: str, writes: _Writes) -> None:
        ns = desired.namespace(name)
        if await _get(self.client, object_path(ns)) is None:
            await self._create(ns, writes)

    async def _copy_secret(
        self, source: Mapping[str, Any], namespace: str, writes: _Writes
    ) -> None:
        wanted = desired.copied_secret(source, namespace)
        current = await _get(self.client, object_path(wanted))
        if current is None:
            await self._create(wanted, writes)
            return
        update = desired.merged_secret(source, current)
        if update is not None:
            await self.client.put_json(object_path(wanted), update)
            writes.paths.append(object_path(wanted))

    async def _ensure(self, obj: dict[str, Any], writes: _Writes) -> None:
        """Create ``obj`` if absent; else rewrite the fields it owns if they drifted."""
        path = object_path(obj)
        current = await _get(self.client, path)
        if current is None:
            await self._create(obj, writes)
            return
        owned = {k: obj[k] for k in _OWNED_FIELDS if k in obj}
        meta = obj["metadata"]
        have_meta = current.get("metadata") or {}
        meta_ok = subset(meta.get("labels") or {}, have_meta.get("labels") or {}) and subset(
            meta.get("ownerReferences") or [], have_meta.get("ownerReferences") or []
        )
        if meta_ok and subset(owned, current):
            return
        update = merged(current, owned)
        update["metadata"] = {
            **have_meta,
            "labels": {**(have_meta.get("labels") or {}), **(meta.get("labels") or {})},
            "ownerReferences": meta.get("ownerReferences") or [],
        }
        for key in _OWNED_FIELDS:
            if key in obj and isinstance(obj[key], list):
                update[key] = obj[key]
        await self.client.put_json(path, update)
        writes.paths.append(path)

    async def _ensure_deployment(
        self, addon: AddonReference, config: GatewayConfiguration, writes: _Writes
    ) -> None:
        wanted = desired.gateway_deployment(addon, config)
        path = object_path(wanted)
        current = await _get(self.client, path)
        if current is None:
            await self._create(wanted, writes)
            return
        labels = (current.get("metadata") or {}).get("labels") or {}
        if labels.get(GENERATION_LABEL) == str(config.generation):
            return
        wanted["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        await self.client.put_json(path, wanted)
        writes.paths.append(path)

    async def _ensure_serving_cert(self, namespace: str, signer: Signer, writes: _Writes) -> None:
        path = collection_path("v1", "Secret", namespace) + f"/{TLS_SECRET_NAME}"
        current = await _get(self.client, path)
        reason = rotation_reason(current, signer, self.now())
        if reason is None:
            return
        fresh = serving_secret(namespace, signer, self.now())
        self._log.info(
            "Issuing serving certificate {namespace}/{name}: {reason}",
            namespace=namespace,
            name=TLS_SECRET_NAME,
            reason=reason,
        )
        if current is None:
            await self._create(fresh, writes)
        else:
            fresh["metadata"] = {
                **current["metadata"],
                "annotations": {
                    **(current["metadata"].get("annotations") or {}),
                    **fresh["metadata"]["annotations"],
                },
            }
            await self.client.put_json(path, fresh)
            writes.paths.append(path)

    async def _secret_management(
        self, addon: AddonReference, config: GatewayConfiguration, writes: _Writes
    ) -> list[str]:
        """A ManagedServiceAccount and a token copy per ``cluster-gateway`` addon."""
        listed = await self.client.get_json(
            collection_path(ADDON_API_VERSION, "ManagedClusterAddOn")
        )
        waiting: list[str] = []
        for mca in listed.get("items") or []:
            meta = mca.get("metadata") or {}
            if meta.get("name") != ADDON_NAME or not meta.get("namespace"):
                continue
            cluster = str(meta["namespace"])
            try:
                if not await self._cluster_credentials(addon, config, mca, cluster, writes):
                    waiting.append(cluster)
            except errors.StatusError as e:
                self._log.warn(
                    "Cluster {cluster}: credentials not copied: {error}", cluster=cluster, error=e
                )
                waiting.append(cluster)
        return waiting

    async def _cluster_credentials(
        self,
        addon: AddonReference,
        config: GatewayConfiguration,
        mca: Mapping[str, Any],
        cluster: str,
        writes: _Writes,
    ) -> bool:
        msa = desired.managed_service_account(mca)
        if await _get(self.client, object_path(msa)) is None:
            await self._create(msa, writes)
        token = await _get(
            self.client,
            collection_path("v1", "Secret", cluster) + f"/{config.managed_service_account_name}",
        )
        if token is None or not (token.get("data") or {}).get("token"):
            return False
        wanted = desired.cluster_secret(addon, config, cluster, token)
        current = await _get(self.client, object_path(wanted))
        if current is None:
            await self._create(wanted, writes)
        else:
            update = desired.updated_cluster_secret(current, wanted)
            if update is not None:
                await self.client.put_json(object_path(wanted), update)
                writes.paths.append(object_path(wanted))
                self._log.info("Cluster {cluster}: token copy updated", cluster=cluster)
        return True

# The gateway's container image. Built by `make image` (scripts/image.sh), which makes BASE from
# Debian's packages (python3, tini, ca-certificates; no pip, no compiler) and puts this project's
# wheels and their dependencies in build/image/wheels: nothing here reaches a registry.
ARG BASE=localhost/cluster-gateway-base

# Build stage: a venv with the wheels installed by pip run from its own wheel (pip is not in
# BASE and never reaches the final stage), the bytecode compiled, and the twistd plugin cache
# (dropin.cache) written now, so that nothing writes under /opt at run time (the plugin modules
# are dated back first: image layers keep whole seconds, and twistd rewrites a cache that is not
# strictly newer than a plugin, which it cannot on a read-only root). Left out: the
# kubernetes package's asyncio client (kubernetes.aio, 68 MB; the gateway uses only
# kubernetes.config and kubernetes.client) and the libraries' own test suites (24 MB).
FROM ${BASE} AS build
LABEL io.clustergateway.image=build
COPY build/image/wheels/ /wheels/
RUN python3 -m venv --without-pip /opt/cluster-gateway \
 && pip_wheel=$(ls /wheels/pip-*.whl) \
 && /opt/cluster-gateway/bin/python "$pip_wheel/pip" install --quiet --no-index \
      --no-cache-dir --disable-pip-version-check --find-links /wheels clustergateway \
 && site=/opt/cluster-gateway/lib/python3.11/site-packages \
 && rm -rf "$site/kubernetes/aio" \
 && find "$site" -depth -type d \( -name test -o -name tests \) -exec rm -rf {} + \
 && find "$site/twisted/plugins" -name '*.py' -exec touch -d @946684800 {} + \
 && /opt/cluster-gateway/bin/python -c "import twisted.plugins as p; from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin, p))" \
 && /opt/cluster-gateway/bin/python -m compileall -q /opt/cluster-gateway \
 && test -f /opt/cluster-gateway/lib/python3.11/site-packages/twisted/plugins/dropin.cache

# Final stage: BASE plus the venv and the entry paths; runs as uid 65532 with a read-only root.
FROM ${BASE}
LABEL io.clustergateway.image=gateway
COPY --from=build /opt/cluster-gateway /opt/cluster-gateway
COPY image/entry.sh /usr/local/bin/cluster-gateway-entry
RUN ln -s /usr/local/bin/cluster-gateway-entry /apiserver \
 && ln -s /usr/local/bin/cluster-gateway-entry /patch \
 && ln -s /usr/local/bin/cluster-gateway-entry /addon-manager \
 && mkdir -m 0700 /var/lib/cluster-gateway && chown 65532:65532 /var/lib/cluster-gateway
ENV PATH=/opt/cluster-gateway/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The default --cert-dir (apiserver.local.config/certificates) is relative to this directory,
# the gateway user's own: a chart that passes no serving pair still starts. With a read-only
# root, mount a volume there (or at --cert-dir), or pass --tls-cert-file/--tls-private-key-file.
WORKDIR /var/lib/cluster-gateway
USER 65532:65532
EXPOSE 9443
ENTRYPOINT ["/apiserver"]

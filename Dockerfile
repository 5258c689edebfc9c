# harp's container images, built by `image/build` (read it first): that script compiles the
# static binary on the host and prepares the build context, so this file compiles nothing and
# pulls nothing (every stage is FROM scratch; no registry is needed).
#
#   harp               the proxy, run as HaRP's image is (contract §6.5-§6.6)
#   harp-exapp-layer   /harp/harp + /harp/start.sh for ExApp images: COPY --from=<it> /harp /harp

FROM scratch AS harp
# rootfs/ holds /usr/local/bin/harp, /healthcheck.sh (a symbolic link to it: harp runs its
# health probe when invoked under that name), Debian's CA bundle for HTTPS calls to Nextcloud,
# and the empty /certs, /run/harp, /tmp and /var/lib/harp.
COPY rootfs/ /
# USER root: harp needs the mounted Docker socket and writes /certs (contract §6.6).
USER 0:0
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8780 8781 8782
VOLUME /certs
LABEL com.centurylinklabs.watchtower.enable="false"
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=10s --retries=9 CMD ["/healthcheck.sh"]
ENTRYPOINT ["/usr/local/bin/harp"]

FROM scratch AS harp-exapp-layer
COPY exapp/ /harp/

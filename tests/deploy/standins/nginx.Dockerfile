# Stand-in for the official nginx image: deploy/nginx.conf needs nginx >= 1.27.3 (`server
# ... resolve` in an upstream), newer than Debian 12's: this one is built on Debian unstable.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx wget \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

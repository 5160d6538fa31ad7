# Neighbours for the program matrix (test/e2e/matrix.test.ts): a PostgreSQL server that trusts the
# test network, and a git daemon serving one bare repository (repo.git, branch main).
#   postgres:   su postgres -s /bin/sh -c 'exec /usr/lib/postgresql/*/bin/postgres -D ... '  (see the test)
#   git daemon: git daemon --reuseaddr --export-all --base-path=/srv/git --verbose
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql git netcat-openbsd \
 && rm -rf /var/lib/apt/lists/* \
 && echo "host all all all trust" >> "$(ls -d /etc/postgresql/*/main)/pg_hba.conf" \
 && ln -s "$(ls -d /usr/lib/postgresql/*/bin)" /usr/local/pgbin \
 && ln -s "$(ls -d /etc/postgresql/*/main)" /etc/pgmain \
 && ln -s "$(ls -d /var/lib/postgresql/*/main)" /var/pgdata \
 && git init -q --bare -b main /srv/git/repo.git \
 && git -C /tmp init -q -b main work && cd /tmp/work \
 && git -c user.name=matrix -c user.email=matrix@test commit -q --allow-empty -m "matrix fixture" \
 && git push -q /srv/git/repo.git main && rm -rf /tmp/work

# Certificates and keys for the test cluster, made with openssl (ECDSA P-256: fast to generate).
# Sourced by `up` after common.sh; writes everything under $PKI. Needs NODE_IP set.
# shellcheck shell=bash

pki_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null; }

# pki_cert NAME CN O SAN(extension value or "") USAGE(server|client|both)
pki_cert() {
  local name="$1" cn="$2" o="$3" san="$4" usage="$5" ext="$PKI/$1.ext" subj="/CN=$2"
  [ -z "$o" ] || subj="/O=$o/CN=$cn"
  pki_key "$name"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    case "$usage" in
      server) echo "extendedKeyUsage=serverAuth" ;;
      client) echo "extendedKeyUsage=clientAuth" ;;
      both) echo "extendedKeyUsage=serverAuth,clientAuth" ;;
    esac
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

pki_all() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  pki_key ca
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=mirrord-test-cluster-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  local dom="$CLUSTER_DOMAIN"
  pki_cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$dom,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP" server
  pki_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
  pki_cert admin kubernetes-admin system:masters "" client
  pki_cert controller-manager system:kube-controller-manager "" "" client
  pki_cert scheduler system:kube-scheduler "" "" client
  pki_cert kube-proxy system:kube-proxy "" "" client
  pki_cert kubelet-client "system:node:$NODE_NAME" system:nodes "" client
  pki_cert kubelet "$NODE_NAME" "" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP" server
  # Service-account tokens: signed with this key, verified with its public half.
  pki_key sa
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE CERT_NAME SERVER
write_kubeconfig() {
  b64() { base64 -w0 <"$1"; }
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mirrord-test
  cluster:
    server: $3
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: mirrord-test
  context:
    cluster: mirrord-test
    user: $2
current-context: mirrord-test
KC
  chmod 600 "$1"
}

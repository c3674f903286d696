#include "common/tls_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace tpserve {
namespace {

using grpc::experimental::FileWatcherCertificateProvider;

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": cannot open (missing or not readable by this user)"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Reads a PEM file and checks that it holds at least one `what` block
// ("CERTIFICATE", "PRIVATE KEY"), so a wrong file fails at start-up rather
// than at the first handshake.
absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag,
                                    absl::string_view what) {
  absl::StatusOr<std::string> text = ReadFile(path, flag);
  if (!text.ok()) return text.status();
  // "-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", ...
  if (!absl::StrContains(*text, "-----BEGIN ") ||
      !absl::StrContains(*text, absl::StrCat(what, "-----"))) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": not a PEM file holding a ", what));
  }
  return text;
}

unsigned int ReloadSeconds(absl::Duration interval) {
  return static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(interval)));
}

}  // namespace

absl::Status CheckPrivateKeyFile(const std::string& path, absl::string_view flag) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": no such file"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": not a regular file"));
  }
  const unsigned mode = st.st_mode & 07777;
  // Group read is tolerated for root-owned files only: that is how a mounted
  // Secret looks (root:fsGroup, 0440); a group-readable key a user owns is a
  // mistake.
  if ((mode & S_IRWXO) != 0 || ((mode & S_IRWXG) != 0 && st.st_uid != 0)) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s=%s: private key file has mode %04o and is readable by %s; refusing to start. "
        "Run 'chmod 600 %s' (or mount the Secret with defaultMode 0400/0440)",
        flag, path, mode, (mode & S_IRWXO) != 0 ? "other users" : "its group", path));
  }
  return ReadPem(path, flag, "PRIVATE KEY").status();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> PublicServerCredentials(
    const PublicTlsFiles& files) {
  if (!files.enabled()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca_file needs --tls_cert_file and --tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file and --tls_key_file go together");
  }
  if (absl::Status s = ReadPem(files.cert_file, "--tls_cert_file", "CERTIFICATE").status();
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPrivateKeyFile(files.key_file, "--tls_key_file"); !s.ok()) return s;
  const bool mutual = !files.client_ca_file.empty();
  if (mutual) {
    if (absl::Status s =
            ReadPem(files.client_ca_file, "--tls_client_ca_file", "CERTIFICATE").status();
        !s.ok()) {
      return s;
    }
  }
  // Re-reads all files every interval; a changed key/cert pair is picked up
  // by new connections, established ones keep their session.
  auto provider = std::make_shared<FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.client_ca_file, ReloadSeconds(files.reload_interval));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (mutual) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientChannelCredentials(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file) {
  if (ca_file.empty() && cert_file.empty() && key_file.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file and --tls_key_file go together");
  }
  grpc::SslCredentialsOptions options;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(ca_file, "--tls_ca_file", "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  if (!cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(cert_file, "--tls_cert_file", "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    if (absl::Status s = CheckPrivateKeyFile(key_file, "--tls_key_file"); !s.ok()) return s;
    absl::StatusOr<std::string> key = ReadFile(key_file, "--tls_key_file");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(options);
}

absl::StatusOr<ClusterTls> ClusterTls::FromFiles(const std::string& ca_file,
                                                 const std::string& cert_file,
                                                 const std::string& key_file,
                                                 absl::Duration reload_interval) {
  ClusterTls tls;
  const int given = !ca_file.empty() + !cert_file.empty() + !key_file.empty();
  if (given == 0) return tls;
  if (given != 3) {
    return absl::InvalidArgumentError(
        "cluster mTLS needs all of --cluster_ca_file, --cluster_cert_file and "
        "--cluster_key_file (or none of them for a plaintext cluster)");
  }
  if (absl::Status s = ReadPem(ca_file, "--cluster_ca_file", "CERTIFICATE").status(); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadPem(cert_file, "--cluster_cert_file", "CERTIFICATE").status(); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPrivateKeyFile(key_file, "--cluster_key_file"); !s.ok()) return s;
  tls.ca_file_ = ca_file;
  tls.cert_file_ = cert_file;
  tls.key_file_ = key_file;
  tls.reload_interval_ = reload_interval;
  // One watcher (one refresh thread) serves every channel and server.
  tls.provider_ = std::make_shared<FileWatcherCertificateProvider>(key_file, cert_file, ca_file,
                                                                   ReloadSeconds(reload_interval));
  return tls;
}

std::shared_ptr<grpc::ServerCredentials> ClusterTls::ServerCredentials() const {
  if (!enabled()) return grpc::InsecureServerCredentials();
  grpc::experimental::TlsServerCredentialsOptions options(provider_);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ClusterTls::ChannelCredentials() const {
  if (!enabled()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider_);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  // Membership is "holds a certificate from the cluster CA": workers are
  // reached at pod IPs that no certificate names (docs/security.md).
  options.set_check_call_host(false);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace tpserve

// tls_test_certs.hpp: a throwaway CA and server certificate, made at run
// time with OpenSSL's API (no private key is committed to the repository).
//
//   auto certs = tls_test::TestCerts::make();   // files in a fresh temp dir
//   io::TlsContext::server({certs.cert_file, certs.key_file});
//   io::TlsContext::client({.ca_file = certs.ca_file});
//
// The CA ("spindle test CA", P-256) signs a server certificate for
// DNS:localhost, IP:127.0.0.1 and IP:::1, valid from an hour ago for a day. A
// second, unrelated CA (other_ca_file) trusts nothing we serve: the
// "untrusted CA" case. The directory is removed by the destructor.
// Header-only; link OpenSSL::Crypto.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace tls_test {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("tls_test: ") + what);
}

inline Key new_key() {
  Key k(EVP_EC_gen("P-256"));
  check(k != nullptr, "EVP_EC_gen");
  return k;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// new_cert: a certificate for `key` named `cn`, signed by issuer_key (and
// issued by `issuer`, or self-signed when issuer is null).
inline Cert new_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool ca,
                     const char* san, long serial) {
  Cert c(X509_new());
  check(c != nullptr, "X509_new");
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 24 * 3600);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* iss = issuer != nullptr ? issuer : c.get();
  X509_set_issuer_name(c.get(), X509_get_subject_name(iss));
  if (ca) {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(c.get(), iss, NID_basic_constraints, "CA:FALSE");
    add_ext(c.get(), iss, NID_ext_key_usage, "serverAuth");
  }
  add_ext(c.get(), iss, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_ext(c.get(), iss, NID_authority_key_identifier, "keyid");
  if (san != nullptr) add_ext(c.get(), iss, NID_subject_alt_name, san);
  check(X509_sign(c.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
  return c;
}

inline void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "fopen");
  bool ok = true;
  if (cert != nullptr) ok = ok && PEM_write_X509(f, cert) == 1;
  if (key != nullptr) ok = ok && PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  check(ok, "PEM_write");
}

struct TestCerts {
  std::filesystem::path dir;
  std::string ca_file;        // the CA that signed cert_file
  std::string cert_file;      // localhost / 127.0.0.1
  std::string key_file;
  std::string other_ca_file;  // an unrelated CA
  std::string cn_only_cert_file;  // signed by ca_file, CN=localhost, no subjectAltName
  std::string cn_only_key_file;

  TestCerts() = default;
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;
  ~TestCerts() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }

  static std::unique_ptr<TestCerts> make() {
    auto t = std::make_unique<TestCerts>();
    std::string tmpl = (std::filesystem::temp_directory_path() / "spindle-tls-XXXXXX").string();
    check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
    t->dir = tmpl;
    Key ca_key = new_key();
    Cert ca = new_cert(ca_key.get(), "spindle test CA", nullptr, ca_key.get(), true, nullptr, 1);
    Key key = new_key();
    Cert cert = new_cert(key.get(), "localhost", ca.get(), ca_key.get(), false,
                         "DNS:localhost,IP:127.0.0.1,IP:::1", 2);
    Key cn_key = new_key();
    Cert cn_only = new_cert(cn_key.get(), "localhost", ca.get(), ca_key.get(), false, nullptr, 4);
    Key other_key = new_key();
    Cert other = new_cert(other_key.get(), "some other CA", nullptr, other_key.get(), true, nullptr, 3);
    t->ca_file = (t->dir / "ca.pem").string();
    t->cert_file = (t->dir / "cert.pem").string();
    t->key_file = (t->dir / "key.pem").string();
    t->other_ca_file = (t->dir / "other-ca.pem").string();
    write_pem(t->ca_file, ca.get(), nullptr);
    write_pem(t->cert_file, cert.get(), nullptr);
    write_pem(t->key_file, nullptr, key.get());
    write_pem(t->other_ca_file, other.get(), nullptr);
    t->cn_only_cert_file = (t->dir / "cn-only.pem").string();
    t->cn_only_key_file = (t->dir / "cn-only-key.pem").string();
    write_pem(t->cn_only_cert_file, cn_only.get(), nullptr);
    write_pem(t->cn_only_key_file, nullptr, cn_key.get());
    return t;
  }
};

}  // namespace tls_test

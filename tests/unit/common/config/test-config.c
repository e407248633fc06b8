/* Tests for the config loader (common/config/config.h): every TOML block
 * of the security guide, the file format (comments, multi-line arrays,
 * arrays of tables, long lines), defaults, the timeout rule, every
 * validation error, unknown-key warnings, and the example configs in
 * deploy/examples/.
 *
 * Warnings are captured by wrapping sora_log(). */
// LDFLAGS: -Wl,--wrap=sora_log
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/config-schema.h"
#include "common/config/config.h"
#include "common/core/log.h"

/* ---- the security guide's config blocks, verbatim -------------------- */

/* Copied from spec/security-guide.md with the indentation they have
 * there; test_guide_blocks_are_current() checks they still match. */
#define GUIDE_TLS \
	"    [servers.imap]\n" \
	"    addr = \":993\" # Standard IMAPS port\n" \
	"    tls = true\n" \
	"    tls_cert_file = \"/path/to/your/fullchain.pem\"\n" \
	"    tls_key_file = \"/path/to/your/privkey.pem\"\n"

#define GUIDE_AUTH_RATE_LIMIT \
	"[servers.imap.auth_rate_limit]\n" \
	"enabled = true\n" \
	"max_attempts_per_ip = 10\n" \
	"max_attempts_per_username = 5\n" \
	"ip_window_duration = \"15m\"\n" \
	"fast_block_threshold = 10\n" \
	"fast_block_duration = \"5m\"\n"

#define GUIDE_PROXY_PROTOCOL \
	"    [servers.imap.proxy_protocol]\n" \
	"    enabled = true\n" \
	"    trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"] # List of trusted proxy IPs/CIDRs\n"

#define GUIDE_S3_ENCRYPTION \
	"[s3]\n" \
	"encrypt = true\n" \
	"encryption_key = \"YOUR-SECRET-32-BYTE-HEX-ENCODED-KEY-HERE\"\n"

#define GUIDE_SEARCH_RATE_LIMIT \
	"[servers.imap]\n" \
	"search_rate_limit_per_min = 10  # Maximum searches per minute (0 = disabled)\n" \
	"search_rate_limit_window = \"1m\" # Time window for rate limiting\n"

#define GUIDE_SESSION_MEMORY \
	"[servers.imap]\n" \
	"session_memory_limit = \"100mb\"  # Maximum memory per session (default: 100mb, 0 = unlimited)\n" \
	"\n" \
	"[servers.pop3]\n" \
	"session_memory_limit = \"100mb\"  # Maximum memory per session (default: 100mb, 0 = unlimited)\n"

#define GUIDE_APPEND_LIMIT \
	"[servers.imap]\n" \
	"append_limit = \"25mb\"  # Maximum size for IMAP APPEND operations\n"

#define GUIDE_LMTP_SIZE \
	"[servers.lmtp]\n" \
	"max_message_size = \"50mb\"  # Maximum size for incoming messages\n"

#define GUIDE_CONNECTION_LIMITS \
	"[servers.imap]\n" \
	"max_connections = 1000          # Total connections\n" \
	"max_connections_per_ip = 10     # Per IP address\n"

#define GUIDE_TIMEOUTS \
	"[servers.imap]\n" \
	"start = true\n" \
	"addr = \":143\"\n" \
	"command_timeout = \"5m\"              # Close after 5 minutes of inactivity\n" \
	"absolute_session_timeout = \"30m\"    # Maximum 30-minute sessions\n" \
	"min_bytes_per_minute = 1024         # Require at least 1KB/min throughput\n" \
	"\n" \
	"[servers.imap_proxy]\n" \
	"start = true\n" \
	"addr = \":1143\"\n" \
	"remote_addrs = [\"backend1:143\", \"backend2:143\"]\n" \
	"command_timeout = \"10m\"             # Longer than backend timeouts\n" \
	"absolute_session_timeout = \"30m\"\n" \
	"min_bytes_per_minute = 1024\n"

#define GUIDE_CLUSTER \
	"[cluster]\n" \
	"enabled = true\n" \
	"bind_addr = \"0.0.0.0\"\n" \
	"bind_port = 7946\n" \
	"node_id = \"node-1\"\n" \
	"peers = [\"node-2:7946\", \"node-3:7946\"]\n" \
	"secret_key = \"base64-encoded-32-byte-key\"  # Generate: openssl rand -base64 32\n" \
	"\n" \
	"# Cluster-wide rate limiting (enabled by default when cluster is enabled)\n" \
	"[cluster.rate_limit_sync]\n" \
	"enabled = true              # Enable cluster-wide rate limiting\n" \
	"sync_blocks = true          # Sync IP blocks across nodes\n" \
	"sync_failure_counts = true  # Sync progressive delays across nodes\n"

#define GUIDE_LETSENCRYPT \
	"[tls]\n" \
	"enabled = true\n" \
	"provider = \"letsencrypt\"\n" \
	"\n" \
	"[tls.letsencrypt]\n" \
	"email = \"admin@example.com\"\n" \
	"domains = [\"mail.example.com\", \"imap.example.com\"]\n" \
	"storage_provider = \"s3\"      # Store certificates in S3\n" \
	"renew_before = \"720h\"        # Optional: renew 30 days before expiry (default)\n" \
	"\n" \
	"[tls.letsencrypt.s3]\n" \
	"bucket = \"sora-tls-certificates\"\n" \
	"region = \"us-east-1\"\n"

#define GUIDE_SHARED_MAILBOXES \
	"[shared_mailboxes]\n" \
	"enabled = true\n" \
	"namespace_prefix = \"Shared/\"\n" \
	"allow_user_create = true          # Or false for admin-only\n" \
	"default_rights = \"lrswipkxtea\"    # Full rights for creators\n"

#define GUIDE_JA4 \
	"[[servers]]\n" \
	"type = \"imap\"\n" \
	"addr = \":993\"\n" \
	"tls = true\n" \
	"# ... other settings ...\n" \
	"\n" \
	"# Disable IDLE for iOS Mail clients\n" \
	"[[servers.client_filters]]\n" \
	"ja4_fingerprint = \"^t13d1516h2_.*\"\n" \
	"disable_caps = [\"IDLE\"]\n" \
	"reason = \"iOS Mail client with known IDLE issues\"\n"

#define GUIDE_HTTP_API \
	"[[servers]]\n" \
	"type = \"http_api\"\n" \
	"start = true\n" \
	"addr = \":8080\"\n" \
	"api_key = \"your-secure-random-api-key\"\n" \
	"allowed_hosts = [\"127.0.0.1\", \"10.0.0.0/8\"]  # IP/CIDR restrictions\n"

#define GUIDE_CLUSTER_SECRET \
	"[cluster]\n" \
	"secret_key = \"base64-encoded-32-byte-key\"\n"

static const char *const guide_blocks[] = {
	GUIDE_TLS, GUIDE_AUTH_RATE_LIMIT, GUIDE_PROXY_PROTOCOL, GUIDE_S3_ENCRYPTION,
	GUIDE_SEARCH_RATE_LIMIT, GUIDE_SESSION_MEMORY, GUIDE_APPEND_LIMIT, GUIDE_LMTP_SIZE,
	GUIDE_CONNECTION_LIMITS, GUIDE_TIMEOUTS, GUIDE_CLUSTER, GUIDE_LETSENCRYPT,
	GUIDE_SHARED_MAILBOXES, GUIDE_JA4, GUIDE_HTTP_API, GUIDE_CLUSTER_SECRET,
};

/* base64 of the bytes 0..31, and of 16 zero bytes. */
#define GOOD_CLUSTER_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SHORT_CLUSTER_KEY "AAAAAAAAAAAAAAAAAAAAAA=="
#define GOOD_HEX_KEY "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

/* ---- captured log lines ------------------------------------------------ */

static char logged[16384];
static size_t logged_len;
static int warnings;

void __wrap_sora_log(enum sora_log_level level, const struct sora_log_ctx *ctx,
		     const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void __wrap_sora_log(enum sora_log_level level, const struct sora_log_ctx *ctx,
		     const char *fmt, ...)
{
	va_list ap;
	int n;

	if (level == SORA_LOG_WARN)
		warnings++;
	if (logged_len + 2 >= sizeof(logged))
		return;
	va_start(ap, fmt);
	n = vsnprintf(logged + logged_len, sizeof(logged) - logged_len - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	logged_len += (size_t)n < sizeof(logged) - logged_len - 1 ?
		(size_t)n : sizeof(logged) - logged_len - 2;
	logged[logged_len++] = '\n';
	logged[logged_len] = '\0';
}

static void clear_log(void)
{
	logged[0] = '\0';
	logged_len = 0;
	warnings = 0;
}

static void assert_logged(const char *want)
{
	if (strstr(logged, want) == NULL)
		fail_msg("log lacks \"%s\"; it has:\n%s", want, logged);
}

/* ---- helpers ------------------------------------------------------------- */

static char tmpdir[64];
static char CERT[128], KEY[128], CA[128];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int setup_files(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sora-test-config-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(CERT, sizeof(CERT), "%s/cert.pem", tmpdir);
	snprintf(KEY, sizeof(KEY), "%s/key.pem", tmpdir);
	snprintf(CA, sizeof(CA), "%s/ca.pem", tmpdir);
	write_file(CERT, "-----BEGIN CERTIFICATE-----\n");
	write_file(KEY, "-----BEGIN PRIVATE KEY-----\n");
	write_file(CA, "-----BEGIN CERTIFICATE-----\n");
	return 0;
}

static int teardown_files(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct sora_config *load(const char *text)
{
	struct sora_config *c = NULL;
	char err[512] = "";

	if (sora_config_load_string(text, strlen(text), "test.toml", &c, err, sizeof(err)) < 0)
		fail_msg("load failed: %s\n--- config:\n%s", err, text);
	assert_non_null(c);
	return c;
}

/* Loads text that must fail; returns the error (a static buffer) after
 * checking that nothing was returned. */
static const char *load_error(const char *text)
{
	static char err[512];
	struct sora_config *sentinel = (struct sora_config *)&err;
	struct sora_config *c = sentinel;

	err[0] = '\0';
	if (sora_config_load_string(text, strlen(text), "test.toml", &c, err, sizeof(err)) == 0)
		fail_msg("loaded although it should fail:\n%s", text);
	assert_ptr_equal(c, sentinel);
	assert_true(err[0] != '\0');
	/* One line. */
	assert_null(strchr(err, '\n'));
	return err;
}

static void expect_error(const char *text, const char *want)
{
	const char *err = load_error(text);

	if (strcmp(err, want) != 0)
		fail_msg("error \"%s\", expected \"%s\"\n--- config:\n%s", err, want, text);
}

static void expect_error_part(const char *text, const char *want)
{
	const char *err = load_error(text);

	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"\n--- config:\n%s", err, want, text);
}

/* Returns a new string: text with every `from` replaced by `to`. */
static char *replace(const char *text, const char *from, const char *to)
{
	size_t n = 0, from_len = strlen(from), to_len = strlen(to);
	const char *p;
	char *out, *o;

	for (p = strstr(text, from); p != NULL; p = strstr(p + from_len, from))
		n++;
	assert_true(n > 0);
	out = malloc(strlen(text) + n * to_len + 1);
	assert_non_null(out);
	for (o = out, p = text; ; ) {
		const char *hit = strstr(p, from);
		if (hit == NULL) {
			memcpy(o, p, strlen(p) + 1);
			break;
		}
		memcpy(o, p, (size_t)(hit - p));
		o += hit - p;
		memcpy(o, to, to_len);
		o += to_len;
		p = hit + from_len;
	}
	return out;
}

/* Returns a new string: `line` (a whole line, with its newline) followed by
 * `extra`, in place of the first occurrence of `line`. */
static char *insert_after(const char *text, const char *line, const char *extra)
{
	const char *hit = strstr(text, line);
	size_t head, len = strlen(text) + strlen(extra) + 1;
	char *out;

	assert_non_null(hit);
	head = (size_t)(hit - text) + strlen(line);
	out = malloc(len);
	assert_non_null(out);
	memcpy(out, text, head);
	snprintf(out + head, len - head, "%s%s", extra, text + head);
	return out;
}

static char *concat(const char *a, const char *b)
{
	size_t len = strlen(a) + strlen(b) + 1;
	char *out = malloc(len);

	assert_non_null(out);
	snprintf(out, len, "%s%s", a, b);
	return out;
}

static const struct sora_server_config *server(const struct sora_config *c, const char *name)
{
	for (size_t i = 0; i < c->servers_count; i++) {
		if (strcmp(c->servers[i].name, name) == 0)
			return &c->servers[i];
	}
	fail_msg("no server named %s", name);
	return NULL;
}

static bool net_match(const struct sora_cidr_list *list, const char *addr)
{
	struct sora_ip ip;

	assert_int_equal(sora_ip_parse(addr, &ip), 0);
	return sora_cidr_list_match(list, &ip);
}

/* ---- the guide, block by block ----------------------------------------- */

static void test_guide_tls(void **state)
{
	struct sora_config *c;
	char *text, *t2;
	const struct sora_server_config *s;

	/* As printed, the files do not exist on this machine: the error must
	 * say so, naming the file, line and key. */
	expect_error(GUIDE_TLS, "test.toml:4: key 'tls_cert_file' in [servers.imap]: "
		     "file not found: /path/to/your/fullchain.pem");

	t2 = replace(GUIDE_TLS, "/path/to/your/fullchain.pem", CERT);
	text = replace(t2, "/path/to/your/privkey.pem", KEY);
	c = load(text);
	s = server(c, "imap");
	assert_int_equal(s->type, SORA_SRV_IMAP);
	assert_string_equal(s->addr, ":993");
	assert_true(s->tls);
	assert_string_equal(s->tls_cert_file, CERT);
	assert_string_equal(s->tls_key_file, KEY);
	sora_config_free(&c);
	assert_null(c);
	free(text);
	free(t2);
}

static void test_guide_auth_rate_limit(void **state)
{
	struct sora_config *c;
	char *text;
	const struct sora_auth_rate_limit_config *r;

	/* Alone, the block defines [servers.imap] without an address. */
	expect_error(GUIDE_AUTH_RATE_LIMIT, "test.toml:1: key 'addr' in [servers.imap]: "
		     "missing (a server with start = true needs an address to listen on)");

	text = concat("[servers.imap]\naddr = \":143\"\n\n", GUIDE_AUTH_RATE_LIMIT);
	c = load(text);
	r = &server(c, "imap")->auth_rate_limit;
	assert_true(r->enabled);
	assert_int_equal(r->max_attempts_per_ip, 10);
	assert_int_equal(r->max_attempts_per_username, 5);
	assert_int_equal(r->ip_window_ms, 15 * 60000);
	assert_int_equal(r->fast_block_threshold, 10);
	assert_int_equal(r->fast_block_ms, 5 * 60000);
	/* The rest keeps the documented defaults. */
	assert_int_equal(r->username_window_ms, 15 * 60000);
	assert_int_equal(r->db_error_threshold_ms, 60000);
	assert_int_equal(r->delay_start_threshold, 2);
	assert_int_equal(r->initial_delay_ms, 2000);
	assert_int_equal(r->max_delay_ms, 30000);
	assert_true(r->delay_multiplier == 2.0);
	assert_true(r->progressive_delay_enabled);
	sora_config_free(&c);
	free(text);

	/* The names of the delay bounds fill the same fields. */
	c = load("[servers.imap]\naddr = \":143\"\n[servers.imap.auth_rate_limit]\n"
		 "progressive_delay_enabled = false\nprogressive_delay_min = \"250ms\"\n"
		 "progressive_delay_max = \"4s\"\n");
	r = &server(c, "imap")->auth_rate_limit;
	assert_false(r->progressive_delay_enabled);
	assert_int_equal(r->initial_delay_ms, 250);
	assert_int_equal(r->max_delay_ms, 4000);
	sora_config_free(&c);
	c = load("[servers.imap]\naddr = \":143\"\n[servers.imap.auth_rate_limit]\n"
		 "initial_delay = \"300ms\"\nmax_delay = \"5s\"\n");
	r = &server(c, "imap")->auth_rate_limit;
	assert_int_equal(r->initial_delay_ms, 300);
	assert_int_equal(r->max_delay_ms, 5000);
	sora_config_free(&c);
	/* Both spellings of one setting in one table: an error naming both. */
	expect_error("[servers.imap]\naddr = \":143\"\n[servers.imap.auth_rate_limit]\n"
		     "initial_delay = \"1s\"\nmax_delay = \"5s\"\nprogressive_delay_min = \"2s\"\n",
		     "test.toml:6: keys 'initial_delay' (line 4) and 'progressive_delay_min' "
		     "(line 6) in [servers.imap.auth_rate_limit] are two names of one setting: "
		     "give one");
	expect_error("[servers.imap]\naddr = \":143\"\n[servers.imap.auth_rate_limit]\n"
		     "progressive_delay_max = \"1s\"\nmax_delay = \"5s\"\n",
		     "test.toml:5: keys 'max_delay' (line 5) and 'progressive_delay_max' "
		     "(line 4) in [servers.imap.auth_rate_limit] are two names of one setting: "
		     "give one");

	/* The sub-table may also come first. */
	text = concat(GUIDE_AUTH_RATE_LIMIT, "\n[servers.imap]\naddr = \":143\"\n");
	c = load(text);
	assert_int_equal(c->servers_count, 1);
	assert_true(server(c, "imap")->auth_rate_limit.enabled);
	sora_config_free(&c);
	free(text);
}

static void test_guide_proxy_protocol(void **state)
{
	struct sora_config *c;
	char *text = concat("[servers.imap]\naddr = \":143\"\n", GUIDE_PROXY_PROTOCOL);
	const struct sora_proxy_protocol_config *pp;

	c = load(text);
	pp = &server(c, "imap")->proxy_protocol;
	assert_true(pp->enabled);
	assert_int_equal(pp->trusted_proxies.count, 2);
	assert_true(net_match(&pp->trusted_proxies, "127.0.0.1"));
	assert_true(net_match(&pp->trusted_proxies, "10.20.30.40"));
	assert_true(net_match(&pp->trusted_proxies, "::ffff:10.20.30.40"));
	assert_false(net_match(&pp->trusted_proxies, "127.0.0.2"));
	assert_false(net_match(&pp->trusted_proxies, "192.168.1.1"));
	assert_int_equal(pp->timeout_ms, 5000);
	sora_config_free(&c);
	free(text);
}

static void test_guide_s3_encryption(void **state)
{
	struct sora_config *c;
	char *text;

	/* The placeholder is not a key: refuse it clearly rather than start
	 * encrypting with something unrecoverable. */
	expect_error(GUIDE_S3_ENCRYPTION, "test.toml:3: key 'encryption_key' in [s3]: "
		     "must be 64 hex characters (a 32-byte key, e.g. from `openssl rand -hex 32`)");

	text = replace(GUIDE_S3_ENCRYPTION, "YOUR-SECRET-32-BYTE-HEX-ENCODED-KEY-HERE", GOOD_HEX_KEY);
	c = load(text);
	assert_true(c->s3.encrypt);
	assert_string_equal(c->s3.encryption_key, GOOD_HEX_KEY);
	sora_config_free(&c);
	free(text);
}

static void test_guide_search_rate_limit(void **state)
{
	char *text = insert_after(GUIDE_SEARCH_RATE_LIMIT, "[servers.imap]\n", "addr = \":143\"\n");
	struct sora_config *c = load(text);
	const struct sora_server_config *s = server(c, "imap");

	assert_int_equal(s->search_rate_limit_per_min, 10);
	assert_int_equal(s->search_rate_limit_window_ms, 60000);
	sora_config_free(&c);
	free(text);
}

static void test_guide_session_memory(void **state)
{
	char *t1 = insert_after(GUIDE_SESSION_MEMORY, "[servers.imap]\n", "addr = \":143\"\n");
	char *text = insert_after(t1, "[servers.pop3]\n", "addr = \":110\"\n");
	struct sora_config *c = load(text);

	assert_int_equal(c->servers_count, 2);
	assert_int_equal(server(c, "imap")->session_memory_limit, 100 * 1024 * 1024);
	assert_int_equal(server(c, "pop3")->session_memory_limit, 100 * 1024 * 1024);
	assert_int_equal(server(c, "pop3")->type, SORA_SRV_POP3);
	sora_config_free(&c);
	free(text);
	free(t1);
}

static void test_guide_message_size_limits(void **state)
{
	char *t1 = insert_after(GUIDE_APPEND_LIMIT, "[servers.imap]\n", "addr = \":143\"\n");
	char *t2 = insert_after(GUIDE_LMTP_SIZE, "[servers.lmtp]\n", "addr = \":24\"\n");
	char *text = concat(t1, t2);
	struct sora_config *c = load(text);

	assert_int_equal(server(c, "imap")->append_limit, 25 * 1024 * 1024);
	assert_int_equal(server(c, "lmtp")->max_message_size, 50 * 1024 * 1024);
	assert_int_equal(server(c, "lmtp")->type, SORA_SRV_LMTP);
	sora_config_free(&c);
	free(text);
	free(t2);
	free(t1);
}

static void test_guide_connection_limits(void **state)
{
	char *text = insert_after(GUIDE_CONNECTION_LIMITS, "[servers.imap]\n", "addr = \":143\"\n");
	struct sora_config *c = load(text);

	assert_int_equal(server(c, "imap")->max_connections, 1000);
	assert_int_equal(server(c, "imap")->max_connections_per_ip, 10);
	sora_config_free(&c);
	free(text);
}

static void test_guide_timeouts(void **state)
{
	struct sora_config *c = load(GUIDE_TIMEOUTS);
	const struct sora_server_config *imap = server(c, "imap");
	const struct sora_server_config *proxy = server(c, "imap_proxy");

	assert_true(imap->start);
	assert_string_equal(imap->addr, ":143");
	assert_int_equal(imap->command_timeout_ms, 5 * 60000);
	assert_int_equal(imap->absolute_session_timeout_ms, 30 * 60000);
	assert_int_equal(imap->min_bytes_per_minute, 1024);

	assert_int_equal(proxy->type, SORA_SRV_IMAP_PROXY);
	assert_true(sora_server_type_is_proxy(proxy->type));
	assert_string_equal(proxy->addr, ":1143");
	assert_int_equal(proxy->remote_addrs_count, 2);
	assert_string_equal(proxy->remote_addrs[0], "backend1:143");
	assert_string_equal(proxy->remote_addrs[1], "backend2:143");
	assert_null(proxy->remote_addrs[2]);
	assert_int_equal(proxy->command_timeout_ms, 10 * 60000);
	assert_int_equal(proxy->absolute_session_timeout_ms, 30 * 60000);
	assert_int_equal(proxy->min_bytes_per_minute, 1024);
	sora_config_free(&c);
}

static void test_guide_cluster(void **state)
{
	struct sora_config *c;
	char *text;

	/* The guide's key is a placeholder: with the cluster enabled the
	 * loader must refuse it and say how to make a real one. */
	expect_error(GUIDE_CLUSTER, "test.toml:7: key 'secret_key' in [cluster]: must be the "
		     "base64 encoding of 32 random bytes (generate one with "
		     "`openssl rand -base64 32`)");

	text = replace(GUIDE_CLUSTER, "base64-encoded-32-byte-key", GOOD_CLUSTER_KEY);
	c = load(text);
	assert_true(c->cluster.enabled);
	assert_string_equal(c->cluster.bind_addr, "0.0.0.0");
	assert_int_equal(c->cluster.bind_port, 7946);
	assert_string_equal(c->cluster.node_id, "node-1");
	assert_int_equal(c->cluster.peers_count, 2);
	assert_string_equal(c->cluster.peers[0], "node-2:7946");
	assert_string_equal(c->cluster.peers[1], "node-3:7946");
	assert_string_equal(c->cluster.secret_key, GOOD_CLUSTER_KEY);
	assert_true(c->cluster.rate_limit_sync_enabled);
	assert_true(c->cluster.sync_blocks);
	assert_true(c->cluster.sync_failure_counts);
	sora_config_free(&c);
	free(text);

	/* [cluster.rate_limit_sync] switches map to their own fields. */
	text = concat("[cluster]\n[cluster.rate_limit_sync]\n"
		      "enabled = false\nsync_blocks = false\n", "sync_failure_counts = false\n");
	c = load(text);
	assert_false(c->cluster.enabled);
	assert_false(c->cluster.rate_limit_sync_enabled);
	assert_false(c->cluster.sync_blocks);
	assert_false(c->cluster.sync_failure_counts);
	sora_config_free(&c);
	free(text);
}

static void test_guide_letsencrypt(void **state)
{
	struct sora_config *c = load(GUIDE_LETSENCRYPT);
	const struct sora_letsencrypt_config *le = &c->tls.letsencrypt;

	assert_true(c->tls.enabled);
	assert_string_equal(c->tls.provider, "letsencrypt");
	assert_string_equal(le->email, "admin@example.com");
	assert_int_equal(le->domains_count, 2);
	assert_string_equal(le->domains[0], "mail.example.com");
	assert_string_equal(le->domains[1], "imap.example.com");
	assert_string_equal(le->storage_provider, "s3");
	assert_int_equal(le->renew_before_ms, 720LL * 3600 * 1000);
	assert_string_equal(le->s3_bucket, "sora-tls-certificates");
	assert_string_equal(le->s3_region, "us-east-1");
	assert_string_equal(le->directory_url, "https://acme-v02.api.letsencrypt.org/directory");
	sora_config_free(&c);
}

static void test_guide_shared_mailboxes(void **state)
{
	struct sora_config *c = load(GUIDE_SHARED_MAILBOXES);

	assert_true(c->shared_mailboxes.enabled);
	assert_string_equal(c->shared_mailboxes.namespace_prefix, "Shared/");
	assert_true(c->shared_mailboxes.allow_user_create);
	assert_string_equal(c->shared_mailboxes.default_rights, "lrswipkxtea");
	sora_config_free(&c);
}

static void test_guide_ja4(void **state)
{
	struct sora_config *c;
	const struct sora_server_config *s;
	char extra[512], *text;

	/* "# ... other settings ..." stands for the certificate, which the
	 * loader must ask for. */
	expect_error(GUIDE_JA4, "test.toml:4: key 'tls' in [[servers]]: tls = true needs "
		     "tls_cert_file and tls_key_file");

	snprintf(extra, sizeof(extra), "tls_cert_file = \"%s\"\ntls_key_file = \"%s\"\n", CERT, KEY);
	text = insert_after(GUIDE_JA4, "tls = true\n", extra);
	c = load(text);
	assert_int_equal(c->servers_count, 1);
	s = &c->servers[0];
	assert_string_equal(s->name, "imap#1");
	assert_int_equal(s->type, SORA_SRV_IMAP);
	assert_string_equal(s->addr, ":993");
	assert_string_equal(s->defined_at, "test.toml:1");
	assert_int_equal(s->client_filters_count, 1);
	assert_string_equal(s->client_filters[0].ja4_fingerprint, "^t13d1516h2_.*");
	assert_int_equal(s->client_filters[0].disable_caps_count, 1);
	assert_string_equal(s->client_filters[0].disable_caps[0], "IDLE");
	assert_null(s->client_filters[0].disable_caps[1]);
	assert_string_equal(s->client_filters[0].reason, "iOS Mail client with known IDLE issues");
	sora_config_free(&c);
	free(text);
}

static void test_guide_http_api(void **state)
{
	struct sora_config *c = load(GUIDE_HTTP_API);
	const struct sora_server_config *s = &c->servers[0];

	assert_int_equal(c->servers_count, 1);
	assert_int_equal(s->type, SORA_SRV_HTTP_API);
	assert_string_equal(s->name, "http_api#1");
	assert_true(s->start);
	assert_string_equal(s->addr, ":8080");
	assert_string_equal(s->api_key, "your-secure-random-api-key");
	assert_int_equal(s->allowed_hosts.count, 2);
	assert_true(net_match(&s->allowed_hosts, "127.0.0.1"));
	assert_true(net_match(&s->allowed_hosts, "10.1.1.1"));
	assert_false(net_match(&s->allowed_hosts, "127.0.0.2"));
	assert_string_equal(sora_server_type_protocol(s->type), "http_api");
	sora_config_free(&c);
}

static void test_guide_cluster_secret(void **state)
{
	/* Without enabled = true the cluster is off and its key unused. */
	struct sora_config *c = load(GUIDE_CLUSTER_SECRET);

	assert_false(c->cluster.enabled);
	assert_string_equal(c->cluster.secret_key, "base64-encoded-32-byte-key");
	sora_config_free(&c);
}

/* Most blocks together in one file, as an operator would combine them. */
static void test_guide_combined(void **state)
{
	char *text, *t;
	struct sora_config *c;
	const struct sora_server_config *s;

	t = concat(GUIDE_TIMEOUTS, "\n" GUIDE_AUTH_RATE_LIMIT "\n" GUIDE_PROXY_PROTOCOL "\n"
		   GUIDE_LETSENCRYPT "\n" GUIDE_SHARED_MAILBOXES "\n" GUIDE_HTTP_API "\n"
		   GUIDE_CLUSTER_SECRET);
	text = insert_after(t, "[servers.imap]\n", "search_rate_limit_per_min = 10  # x\n"
			    "session_memory_limit = \"100mb\"\nappend_limit = \"25mb\"\n"
			    "max_connections = 1000\n");
	c = load(text);
	assert_int_equal(c->servers_count, 3);
	s = server(c, "imap");
	assert_true(s->auth_rate_limit.enabled);
	assert_true(s->proxy_protocol.enabled);
	assert_int_equal(s->search_rate_limit_per_min, 10);
	assert_false(server(c, "imap_proxy")->auth_rate_limit.enabled);
	assert_string_equal(server(c, "http_api#3")->api_key, "your-secure-random-api-key");
	assert_true(c->shared_mailboxes.enabled);
	assert_true(c->tls.enabled);
	sora_config_free(&c);
	free(text);
	free(t);
}

/* The copies above are the guide's blocks: when the guide is reachable
 * (shared/ beside the work tree), every ```toml block in it must be one
 * of them. */
static void test_guide_blocks_are_current(void **state)
{
	static const char *const paths[] = {
		"../shared/spec/security-guide.md", "../../shared/spec/security-guide.md",
	};
	FILE *f = NULL;
	char line[1024], block[4096];
	size_t len = 0, found = 0;
	bool in_block = false;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]) && f == NULL; i++)
		f = fopen(paths[i], "r");
	if (f == NULL)
		skip();
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *p = line + strspn(line, " ");

		if (!in_block) {
			if (strcmp(p, "```toml\n") == 0) {
				in_block = true;
				len = 0;
			}
			continue;
		}
		if (strncmp(p, "```", 3) == 0) {
			bool known = false;

			block[len] = '\0';
			for (size_t i = 0; i < sizeof(guide_blocks) / sizeof(guide_blocks[0]); i++)
				known |= strcmp(block, guide_blocks[i]) == 0;
			if (!known)
				fail_msg("the guide has a config block this test does not "
					 "know:\n%s", block);
			found++;
			in_block = false;
			continue;
		}
		assert_true(len + strlen(line) < sizeof(block));
		memcpy(block + len, line, strlen(line));
		len += strlen(line);
	}
	fclose(f);
	assert_int_equal(found, sizeof(guide_blocks) / sizeof(guide_blocks[0]));
}

/* ---- file format ----------------------------------------------------------- */

static void test_comments_and_strings(void **state)
{
	struct sora_config *c = load(
		"# a comment line\n"
		"   # an indented comment\n"
		"hostname = \"mail.example.com\" # the greeting name\n"
		"[servers.imap]   # a comment after a header\n"
		"addr = \":143\"#no space before the comment\n"
		"master_password = \"p#ss;w0rd ; x \\\" \\\\ end\" # comment with \"quotes\"\n"
		"master_username = \"\\u00e9t\\u00E9 \\U0001F600\"\n"
		"master_sasl_username = \"\"\n"
		"\t  tls = false\t# tabs\n");
	const struct sora_server_config *s = server(c, "imap");

	assert_string_equal(c->hostname, "mail.example.com");
	assert_string_equal(s->addr, ":143");
	assert_string_equal(s->master_password, "p#ss;w0rd ; x \" \\ end");
	assert_string_equal(s->master_username, "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80");
	assert_string_equal(s->master_sasl_username, "");
	assert_string_equal(s->hostname, "mail.example.com");
	sora_config_free(&c);
}

static void test_multiline_arrays(void **state)
{
	struct sora_config *c = load(
		"trusted_networks = [\n"
		"  \"10.0.0.0/8\",   # the office\n"
		"\n"
		"  # a comment inside the array\n"
		"  \"2001:db8::/32\"\n"
		"]\n"
		"[servers.imap_proxy]\n"
		"addr = \"127.0.0.1:1143\"\n"
		"remote_addrs = [ \"backend1:143\",\n"
		"\"backend2:143\", \"[2001:db8::1]:143\",\n"
		"        \"unix:/run/sora/imap.sock\",   ]   # trailing comma\n"
		"command_timeout = \"10m\"\n"
		"[[servers.imap_proxy.client_filters]]\n"
		"ja4_fingerprint = \"^x\"\n"
		"disable_caps = [\n"
		"  \"IDLE ;not a comment\",\n"
		"  \"MOVE # not a comment\"]\n"
		"reason = \"r\"\n"
		"[servers.lmtp]\n"
		"addr = \":24\"\n"
		"trusted_networks = [\n"
		"]\n");
	const struct sora_server_config *s = server(c, "imap_proxy");

	assert_int_equal(c->trusted_networks.count, 2);
	assert_true(net_match(&c->trusted_networks, "10.1.1.1"));
	assert_true(net_match(&c->trusted_networks, "2001:db8::7"));
	assert_false(net_match(&c->trusted_networks, "127.0.0.1"));
	assert_int_equal(s->remote_addrs_count, 4);
	assert_string_equal(s->remote_addrs[0], "backend1:143");
	assert_string_equal(s->remote_addrs[1], "backend2:143");
	assert_string_equal(s->remote_addrs[2], "[2001:db8::1]:143");
	assert_string_equal(s->remote_addrs[3], "unix:/run/sora/imap.sock");
	assert_null(s->remote_addrs[4]);
	assert_int_equal(s->command_timeout_ms, 10 * 60000);
	assert_int_equal(s->client_filters_count, 1);
	assert_string_equal(s->client_filters[0].disable_caps[0], "IDLE ;not a comment");
	assert_string_equal(s->client_filters[0].disable_caps[1], "MOVE # not a comment");
	assert_string_equal(s->client_filters[0].reason, "r");
	assert_int_equal(server(c, "lmtp")->trusted_networks.count, 0);
	sora_config_free(&c);
}

static void test_multiline_array_errors(void **state)
{
	expect_error("[servers.imap_proxy]\naddr = \":1\"\nremote_addrs = [\n  \"a:1\",\n",
		     "test.toml:3: array not closed (missing ']')");
	expect_error("[servers.imap_proxy]\naddr = \":1\"\nremote_addrs = [\n  \"a:1\",\n"
		     "[servers.imap]\n",
		     "test.toml:5: the array started on line 3 is not closed (missing ']') "
		     "before this line");
	expect_error("trusted_networks = [\n \"10.0.0.0/8\",\n [\"::1\"]]\n",
		     "test.toml:3: the array started on line 1 is not closed (missing ']') "
		     "before this line");
	expect_error("trusted_networks = [\"::1\", [\"::2\"]]\n",
		     "test.toml:1: key 'trusted_networks' at the top level: arrays may only hold "
		     "strings (element 2)");
	expect_error("trusted_networks = [\n \"10.0.0.0/8\"\n \"::1\"]\n",
		     "test.toml:1: key 'trusted_networks' at the top level: expected ',' or ']' "
		     "after array element 1");
	expect_error("trusted_networks = [\n \"10.0.0.0/8\",\n \"300.0.0.0/8\"]\n",
		     "test.toml:1: key 'trusted_networks' at the top level: element 2 "
		     "(\"300.0.0.0/8\"): invalid IP address (expected e.g. \"10.0.0.0/8\" or "
		     "\"2001:db8::/32\")");
	expect_error("trusted_networks = [\n \"x\" ; y\n]\n",
		     "test.toml:2: ';' does not start a comment in this file format; use '#'");
	expect_error("trusted_networks = [\n \"x\n]\n",
		     "test.toml:2: unterminated string (a string must end on the line it starts)");
	expect_error("trusted_networks = [\n \"::1\"] ]\n",
		     "test.toml:2: ']' without a matching '['");
}

static void test_arrays_of_tables(void **state)
{
	struct sora_config *c = load(
		"[[servers]]\n"
		"type = \"imap\"\n"
		"addr = \":143\"\n"
		"\n"
		"[[servers.client_filters]]\n"
		"ja4_fingerprint = \"^a\"\n"
		"disable_caps = [\"IDLE\"]\n"
		"\n"
		"[[servers.client_filters]]\n"
		"ja4_fingerprint = \"^b\"\n"
		"\n"
		"[[servers]]\n"
		"addr = \":110\"\n"
		"type = \"pop3\"                 # type may come after other keys\n"
		"max_connections_per_ip = 3\n"
		"\n"
		"[servers.auth_rate_limit]      # belongs to the pop3 entry\n"
		"enabled = true\n"
		"\n"
		"[servers.proxy_protocol]\n"
		"enabled = true\n"
		"trusted_proxies = [\"192.0.2.1\"]\n"
		"\n"
		"[[servers.client_filters]]\n"
		"ja4_fingerprint = \"^c\"\n"
		"\n"
		"[servers.sieve]\n"
		"type = \"managesieve\"\n"
		"addr = \":4190\"\n"
		"\n"
		"[[servers.sieve.client_filters]]\n"
		"ja4_fingerprint = \"^d\"\n"
		"\n"
		"[[servers.client_filters]]      # still the most recent [[servers]] entry\n"
		"ja4_fingerprint = \"^e\"\n"
		"\n"
		"[[database.read_endpoints]]\n"
		"host = \"replica1\"\n"
		"port = 5433\n"
		"[[database.read_endpoints]]\n"
		"host = \"replica2\"\n");
	const struct sora_server_config *imap, *pop3, *sieve;

	assert_int_equal(c->servers_count, 3);
	imap = &c->servers[0];
	pop3 = &c->servers[1];
	sieve = &c->servers[2];
	assert_string_equal(imap->name, "imap#1");
	assert_int_equal(imap->client_filters_count, 2);
	assert_string_equal(imap->client_filters[0].ja4_fingerprint, "^a");
	assert_string_equal(imap->client_filters[1].ja4_fingerprint, "^b");
	assert_int_equal(imap->client_filters[1].disable_caps_count, 0);
	assert_false(imap->auth_rate_limit.enabled);

	assert_string_equal(pop3->name, "pop3#2");
	assert_int_equal(pop3->type, SORA_SRV_POP3);
	assert_int_equal(pop3->max_connections_per_ip, 3);
	assert_true(pop3->auth_rate_limit.enabled);
	assert_true(pop3->proxy_protocol.enabled);
	assert_int_equal(pop3->client_filters_count, 2);
	assert_string_equal(pop3->client_filters[0].ja4_fingerprint, "^c");
	assert_string_equal(pop3->client_filters[1].ja4_fingerprint, "^e");

	assert_string_equal(sieve->name, "sieve");
	assert_int_equal(sieve->type, SORA_SRV_MANAGESIEVE);
	assert_int_equal(sieve->client_filters_count, 1);
	assert_string_equal(sieve->client_filters[0].ja4_fingerprint, "^d");

	assert_int_equal(c->database.read_endpoints_count, 2);
	assert_string_equal(c->database.read_endpoints[0].host, "replica1");
	assert_int_equal(c->database.read_endpoints[0].port, 5433);
	assert_string_equal(c->database.read_endpoints[1].host, "replica2");
	assert_int_equal(c->database.read_endpoints[1].port, 5432);
	sora_config_free(&c);
}

static void test_table_errors(void **state)
{
	expect_error("[[servers.client_filters]]\nja4_fingerprint = \"x\"\n",
		     "test.toml:1: [[servers.client_filters]] must follow a [[servers]] entry "
		     "(or name its server: [[servers.NAME.client_filters]])");
	expect_error("[[servers.imap]]\naddr = \":1\"\n",
		     "test.toml:1: a named server is written [servers.imap], not [[servers.imap]]");
	expect_error("[servers]\nimap = 1\n",
		     "test.toml:1: [servers] needs a name: write [servers.NAME] or [[servers]] "
		     "with type = \"...\"");
	expect_error("[database.read_endpoints]\nhost = \"x\"\n",
		     "test.toml:1: database.read_endpoints must be written [[database.read_endpoints]]");
	expect_error("[[logging]]\n", "test.toml:1: logging must be written [logging]");
	expect_error("[servers.imap]\naddr = \":1\"\n[servers.imap.client_filters]\n",
		     "test.toml:3: servers.imap.client_filters must be written "
		     "[[servers.imap.client_filters]]");
	expect_error("[logging]\n[database]\n[logging]\n",
		     "test.toml:3: table [logging] is defined twice (first on line 1)");
	expect_error("[servers.imap]\naddr = \":1\"\n[servers.imap.auth_rate_limit]\n"
		     "[servers.imap.auth_rate_limit]\n",
		     "test.toml:4: table [servers.imap.auth_rate_limit] is defined twice "
		     "(first on line 3)");
	expect_error("[servers.imap]\naddr = \":1\"\n[servers.imap]\naddr = \":2\"\n",
		     "test.toml:3: duplicate server name 'imap' (first defined on line 1)");
	expect_error("[[servers]]\ntype = \"imap\"\naddr = \":1\"\n[[servers.client_filters]]\n"
		     "reason = \"x\"\n",
		     "test.toml:4: key 'ja4_fingerprint' in [[servers.client_filters]]: missing");
	expect_error("[[database.read_endpoints]]\nport = 5433\n",
		     "test.toml:1: key 'host' in [[database.read_endpoints]]: missing");
}

static void test_syntax_errors(void **state)
{
	expect_error("hostname \"x\"\n",
		     "test.toml:1: expected 'key = value' or a [table] header");
	expect_error("\n\nservers.imap.addr = \":1\"\n",
		     "test.toml:3: dotted keys are not supported; write a [table] header instead");
	expect_error("\"hostname\" = \"x\"\n", "test.toml:1: quoted keys are not supported");
	expect_error("hostname =   # nothing\n", "test.toml:1: missing value for key 'hostname'");
	expect_error("[servers.imap\n", "test.toml:1: table header must end with ']'");
	expect_error("[[servers]\n", "test.toml:1: table header must end with ']]'");
	expect_error("[servers.\"my imap\"]\n", "test.toml:1: quoted table names are not supported");
	expect_error("[]\n", "test.toml:1: invalid table name (use letters, digits, '_' and '-', "
		     "parts separated by '.')");
	expect_error("[a..b]\n", "test.toml:1: invalid table name (use letters, digits, '_' and "
		     "'-', parts separated by '.')");
	expect_error("[logging] level = \"x\"\n",
		     "test.toml:1: unexpected text after the table header");
	expect_error("hostname = \"abc\n",
		     "test.toml:1: unterminated string (a string must end on the line it starts)");
	expect_error("hostname = \"abc\\\n",
		     "test.toml:1: unterminated string (a string must end on the line it starts)");
	expect_error("hostname = 'abc'\n",
		     "test.toml:1: single-quoted strings are not supported; use \"...\"");
	expect_error("event_loops = 1 ; two\n",
		     "test.toml:1: ';' does not start a comment in this file format; use '#'");
	expect_error("; an INI comment\n",
		     "test.toml:1: expected 'key = value' or a [table] header");
	expect_error("hostname = ]\n", "test.toml:1: ']' without a matching '['");
	expect_error("hostname = \"a\\qb\"\n",
		     "test.toml:1: key 'hostname' at the top level: invalid escape sequence in string");
	expect_error("hostname = \"a\\nb\"\n",
		     "test.toml:1: key 'hostname' at the top level: control characters are not "
		     "allowed in strings");
	expect_error("hostname = \"a\\u000db\"\n",
		     "test.toml:1: key 'hostname' at the top level: control characters are not "
		     "allowed in strings");
	expect_error("hostname = \"\\ud800\"\n",
		     "test.toml:1: key 'hostname' at the top level: invalid Unicode code point in "
		     "escape");
	expect_error("hostname = \"\\u12\"\n",
		     "test.toml:1: key 'hostname' at the top level: invalid \\u escape (needs 4 "
		     "hex digits)");
	expect_error("event_loops = 1 2\n",
		     "test.toml:1: key 'event_loops' at the top level: unexpected text after the value");
	expect_error("event_loops = tru\n",
		     "test.toml:1: key 'event_loops' at the top level: invalid value (strings must "
		     "be in double quotes)");
	expect_error("event_loops = 99999999999999999999\n",
		     "test.toml:1: key 'event_loops' at the top level: integer out of range");
	expect_error("event_loops = 1__0\n",
		     "test.toml:1: key 'event_loops' at the top level: unexpected text after the value");
	expect_error("trusted_networks = [1, 2]\n",
		     "test.toml:1: key 'trusted_networks' at the top level: arrays may only hold "
		     "strings (element 1)");
	/* Syntax errors count in unknown keys and tables too. */
	expect_error("[nowhere]\nx = tru\n",
		     "test.toml:2: key 'x' in [nowhere]: invalid value (strings must be in double "
		     "quotes)");
	expect_error("hostname = \"a\"\nhostname = \"b\"\n",
		     "test.toml:2: key 'hostname' at the top level: set twice (first on line 1)");
}

static void test_bytes(void **state)
{
	static const char nul[] = "hostname = \"a\"\nevent_loops = 1\0\n";
	struct sora_config *c = NULL;
	char err[256];

	assert_int_equal(sora_config_load_string(nul, sizeof(nul) - 1, "test.toml", &c,
						 err, sizeof(err)), -1);
	assert_string_equal(err, "test.toml:2: control character 0x00 (only tabs are allowed)");
	assert_null(c);
	expect_error("hostname = \"\xff\"\n", "test.toml:1: invalid UTF-8");
	expect_error("hostname = \"\xc0\xaf\"\n", "test.toml:1: invalid UTF-8");
	expect_error("hostname = \"\xed\xa0\x80\"\n", "test.toml:1: invalid UTF-8");
	expect_error("hostname = \"\xe2\x82\"\n", "test.toml:1: invalid UTF-8");
	expect_error("x = 1\rhostname = \"a\"\n",
		     "test.toml:1: control character 0x0d (only tabs are allowed)");
	expect_error("hostname = \"a\x1b[2J\"\n",
		     "test.toml:1: control character 0x1b (only tabs are allowed)");

	/* UTF-8 in strings, a byte order mark and CRLF line ends are fine. */
	c = load("\xef\xbb\xbfhostname = \"h\xc3\xb6st\"\r\n[servers.imap]\r\naddr = \":143\"\r\n");
	assert_string_equal(c->hostname, "h\xc3\xb6st");
	assert_string_equal(server(c, "imap")->addr, ":143");
	sora_config_free(&c);

	/* No newline at the end, and an empty file. */
	c = load("hostname = \"a\"");
	assert_string_equal(c->hostname, "a");
	sora_config_free(&c);
	c = load("");
	assert_int_equal(c->servers_count, 0);
	sora_config_free(&c);
}

/* A line of `len` characters: reason = "xxx...". */
static char *line_of(size_t len, const char *inside)
{
	static const char head[] = "[servers.imap]\naddr = \":1\"\n[[servers.imap.client_filters]]\n"
		"ja4_fingerprint = \"x\"\n";
	size_t prefix = strlen("reason = \""), n = strlen(inside);
	char *text = malloc(sizeof(head) + len + 2);
	char *p;

	assert_non_null(text);
	memcpy(text, head, sizeof(head) - 1);
	p = text + sizeof(head) - 1;
	memcpy(p, "reason = \"", prefix);
	memset(p + prefix, 'x', len - prefix - 1);
	memcpy(p + prefix, inside, n);
	p[len - 1] = '"';
	p[len] = '\n';
	p[len + 1] = '\0';
	return text;
}

static void test_long_lines(void **state)
{
	struct sora_config *c;
	char *text;

	/* inih keeps 199 characters of a line: those load... */
	text = line_of(199, "");
	c = load(text);
	assert_int_equal(strlen(server(c, "imap")->client_filters[0].reason), 199 - 11);
	sora_config_free(&c);
	free(text);

	/* ...one more is refused with the line number, never cut. */
	text = line_of(200, "");
	expect_error(text, "test.toml:5: line too long (200 characters; the limit is 199)");
	free(text);

	/* Comments count, since inih sees the whole line. */
	{
		char buf[300];
		memset(buf, '#', 230);
		memcpy(buf, "hostname = \"a\" ", 15);
		buf[230] = '\n';
		buf[231] = '\0';
		expect_error(buf, "test.toml:1: line too long (230 characters; the limit is 199)");
	}

	/* A ';' after a space inside a string is escaped for inih and so
	 * takes more room; near the limit that is an error too. */
	text = line_of(199, "a ;b");
	expect_error(text, "test.toml:5: line too long (over 199 characters once a ';' in a "
		     "string is escaped as \\u003b)");
	free(text);
	text = line_of(150, "a ;b ;c");
	c = load(text);
	assert_non_null(strstr(server(c, "imap")->client_filters[0].reason, "a ;b ;c"));
	sora_config_free(&c);
	free(text);
}

/* ---- defaults ------------------------------------------------------------ */

/* DESIGN.md §6: one base for every relative path, base_dir when given. */
static void test_base_dir(void **state)
{
	struct sora_config *c = load("base_dir = \"/srv/sora/\"\n"
				     "[storage]\nfs_path = \"blobs\"\n"
				     "[uploader]\npath = \"/var/spool/sora\"\n"
				     "[local_cache]\npath = \"\"\n");

	assert_string_equal(c->base_dir, "/srv/sora/");
	assert_false(c->base_dir_is_cwd);
	assert_string_equal(c->storage.fs_path, "/srv/sora/blobs");
	assert_string_equal(c->uploader.path, "/var/spool/sora");   /* absolute: kept */
	assert_string_equal(c->local_cache.path, "");               /* empty: off, kept */
	sora_config_free(&c);
	c = load("base_dir = \"/srv/sora\"\n");
	assert_string_equal(c->local_cache.path, "/srv/sora/var/cache");
	sora_config_free(&c);
	expect_error("base_dir = \"srv/sora\"\n",
		     "test.toml:1: key 'base_dir' at the top level: must be an absolute path, "
		     "not \"srv/sora\"");
}

static void test_defaults(void **state)
{
	struct sora_config *c = load("");
	char host[256], cwd[4096], want[4200];

	assert_int_equal(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	assert_string_equal(c->path, "test.toml");
	assert_string_equal(c->hostname, host);
	assert_int_equal(c->event_loops, 0);
	assert_int_equal(c->worker_threads, 16);
	assert_int_equal(c->trusted_networks.count, 2);
	assert_true(net_match(&c->trusted_networks, "127.0.0.1"));
	assert_true(net_match(&c->trusted_networks, "127.255.0.9"));
	assert_true(net_match(&c->trusted_networks, "::ffff:127.0.0.1"));
	assert_true(net_match(&c->trusted_networks, "::1"));
	assert_false(net_match(&c->trusted_networks, "10.0.0.1"));
	assert_false(net_match(&c->trusted_networks, "::2"));

	assert_string_equal(c->logging.level, "info");
	assert_string_equal(c->logging.format, "console");
	assert_string_equal(c->logging.output, "stderr");

	assert_string_equal(c->database.host, "localhost");
	assert_int_equal(c->database.port, 5432);
	assert_string_equal(c->database.dbname, "sora_mail_db");
	assert_string_equal(c->database.user, "postgres");
	assert_string_equal(c->database.password, "");
	assert_string_equal(c->database.sslmode, "prefer");
	assert_int_equal(c->database.max_conns, 20);
	assert_int_equal(c->database.min_conns, 2);
	assert_int_equal(c->database.max_conn_lifetime_ms, 3600000);
	assert_int_equal(c->database.max_conn_idle_time_ms, 30 * 60000);
	assert_int_equal(c->database.query_timeout_ms, 30000);
	assert_int_equal(c->database.search_query_timeout_ms, 60000);
	assert_int_equal(c->database.write_timeout_ms, 30000);
	assert_int_equal(c->database.read_endpoints_count, 0);
	assert_null(c->database.read_endpoints);

	assert_string_equal(c->storage.backend, "fs");
	/* Relative defaults resolve against the working directory. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_string_equal(c->base_dir, cwd);
	assert_true(c->base_dir_is_cwd);
	snprintf(want, sizeof(want), "%s/var/blobs", cwd);
	assert_string_equal(c->storage.fs_path, want);
	assert_null(c->s3.endpoint);
	assert_string_equal(c->s3.region, "us-east-1");
	assert_null(c->s3.bucket);
	assert_true(c->s3.use_ssl);
	assert_false(c->s3.path_style);
	assert_true(c->s3.tls_verify);
	assert_false(c->s3.encrypt);
	assert_null(c->s3.encryption_key);
	assert_null(c->s3.old_encryption_keys);
	assert_int_equal(c->s3.old_encryption_keys_count, 0);
	assert_int_equal(c->s3.timeout_ms, 60000);

	snprintf(want, sizeof(want), "%s/var/staging", cwd);
	assert_string_equal(c->uploader.path, want);
	assert_int_equal(c->uploader.workers, 4);
	assert_int_equal(c->uploader.max_attempts, 0);
	assert_int_equal(c->uploader.retry_interval_ms, 30000);
	snprintf(want, sizeof(want), "%s/var/cache", cwd);
	assert_string_equal(c->local_cache.path, want);
	assert_int_equal(c->local_cache.capacity, 1024ULL * 1024 * 1024);
	assert_int_equal(c->local_cache.max_object_size, 5 * 1024 * 1024);

	assert_false(c->tls.enabled);
	assert_string_equal(c->tls.provider, "file");
	assert_int_equal(c->tls.letsencrypt.renew_before_ms, 720LL * 3600000);
	assert_string_equal(c->tls.letsencrypt.storage_provider, "fs");

	assert_false(c->cluster.enabled);
	assert_string_equal(c->cluster.bind_addr, "0.0.0.0");
	assert_int_equal(c->cluster.bind_port, 7946);
	assert_string_equal(c->cluster.node_id, host);
	assert_int_equal(c->cluster.peers_count, 0);
	assert_null(c->cluster.secret_key);
	assert_true(c->cluster.rate_limit_sync_enabled);
	assert_true(c->cluster.sync_blocks);
	assert_true(c->cluster.sync_failure_counts);

	assert_false(c->shared_mailboxes.enabled);
	assert_string_equal(c->shared_mailboxes.namespace_prefix, "Shared/");
	assert_false(c->shared_mailboxes.allow_user_create);
	assert_string_equal(c->shared_mailboxes.default_rights, "lrswipkxtea");

	assert_int_equal(c->servers_count, 0);
	sora_config_free(&c);
	sora_config_free(&c);   /* NULL-safe */
}

static void test_server_defaults(void **state)
{
	struct sora_config *c = load("hostname = \"mx.example.net\"\n\n[servers.imap]\naddr = \":143\"\n");
	const struct sora_server_config *s = server(c, "imap");

	assert_int_equal(s->type, SORA_SRV_IMAP);
	assert_string_equal(s->defined_at, "test.toml:3");
	assert_true(s->start);
	assert_string_equal(s->hostname, "mx.example.net");
	assert_false(s->tls);
	assert_false(s->tls_use_starttls);
	assert_null(s->tls_cert_file);
	assert_false(s->tls_verify);
	assert_string_equal(s->tls_min_version, "1.2");
	assert_int_equal(s->command_timeout_ms, SORA_DEFAULT_COMMAND_TIMEOUT_MS);
	assert_int_equal(s->absolute_session_timeout_ms, SORA_DEFAULT_ABSOLUTE_SESSION_TIMEOUT_MS);
	assert_int_equal(s->min_bytes_per_minute, SORA_DEFAULT_MIN_BYTES_PER_MINUTE);
	assert_int_equal(s->max_connections, SORA_DEFAULT_MAX_CONNECTIONS);
	assert_int_equal(s->max_connections_per_ip, SORA_DEFAULT_MAX_CONNECTIONS_PER_IP);
	assert_int_equal(s->session_memory_limit, SORA_DEFAULT_SESSION_MEMORY_LIMIT);
	assert_int_equal(s->append_limit, SORA_DEFAULT_APPEND_LIMIT);
	assert_int_equal(s->max_message_size, SORA_DEFAULT_MAX_MESSAGE_SIZE);
	assert_int_equal(s->search_rate_limit_per_min, 0);
	assert_int_equal(s->search_rate_limit_window_ms, SORA_DEFAULT_SEARCH_RATE_WINDOW_MS);
	assert_int_equal(s->max_errors, 10);
	assert_false(s->insecure_auth);
	assert_false(s->proxy_protocol.enabled);
	assert_int_equal(s->proxy_protocol.trusted_proxies.count, 0);
	assert_int_equal(s->proxy_protocol.timeout_ms, SORA_DEFAULT_PROXY_PROTOCOL_TIMEOUT_MS);
	assert_false(s->auth_rate_limit.enabled);
	assert_int_equal(s->auth_rate_limit.max_attempts_per_ip, 10);
	assert_int_equal(s->auth_rate_limit.fast_block_ms, 5 * 60000);
	assert_int_equal(s->trusted_networks.count, 0);
	assert_int_equal(s->master_sasl_allowed_networks.count, 0);
	assert_null(s->master_username);
	assert_null(s->remote_addrs);
	assert_int_equal(s->remote_addrs_count, 0);
	assert_false(s->remote_tls);
	assert_true(s->remote_tls_verify);
	assert_true(s->remote_use_proxy_protocol);
	assert_int_equal(s->connect_timeout_ms, 10000);
	assert_null(s->api_key);
	assert_int_equal(s->allowed_hosts.count, 0);
	assert_string_equal(s->path, "/metrics");
	assert_int_equal(s->client_filters_count, 0);
	sora_config_free(&c);
}

static void test_type_dependent_defaults(void **state)
{
	struct sora_config *c = load(
		"[servers.lmtp]\naddr = \":24\"\n"
		"[servers.lmtp_proxy]\naddr = \":2424\"\nremote_addrs = [\"b:24\"]\n"
		"[servers.lmtp2]\ntype = \"lmtp\"\naddr = \":25\"\nmax_connections_per_ip = 5\n"
		"[servers.pop3_proxy]\naddr = \":1110\"\nremote_addrs = [\"b:110\"]\n"
		"[servers.managesieve]\naddr = \":4190\"\n"
		"[servers.metrics]\naddr = \"127.0.0.1:9100\"\n");

	/* MTAs deliver from few addresses: no per-IP limit on LMTP... */
	assert_int_equal(server(c, "lmtp")->max_connections_per_ip, 0);
	assert_int_equal(server(c, "lmtp_proxy")->max_connections_per_ip, 0);
	/* ...unless the operator sets one. */
	assert_int_equal(server(c, "lmtp2")->max_connections_per_ip, 5);
	assert_int_equal(server(c, "pop3_proxy")->max_connections_per_ip, 10);
	assert_int_equal(server(c, "managesieve")->max_connections_per_ip, 10);
	assert_int_equal(server(c, "metrics")->type, SORA_SRV_METRICS);
	assert_string_equal(server(c, "metrics")->path, "/metrics");
	sora_config_free(&c);
}

static void test_timeouts(void **state)
{
	struct sora_config *c = load(
		"[servers.imap]\n"
		"addr = \":143\"\n"
		"command_timeout = 0\n"
		"absolute_session_timeout = -1\n"
		"min_bytes_per_minute = -1\n"
		"proxy_protocol_timeout = \"0\"\n"
		"connect_timeout = \"-1\"\n"
		"[servers.pop3]\n"
		"addr = \":110\"\n"
		"command_timeout = 90                 # an integer is seconds\n"
		"absolute_session_timeout = \"1h30m\"\n"
		"min_bytes_per_minute = 0\n"
		"proxy_protocol_timeout = \"3s\"\n"
		"[servers.lmtp]\n"
		"addr = \":24\"\n"
		"command_timeout = \"0s\"\n"
		"absolute_session_timeout = \"-1\"\n"
		"min_bytes_per_minute = 4096\n"
		"proxy_protocol_timeout = \"3s\"\n"
		"[servers.lmtp.proxy_protocol]\n"
		"timeout = \"2s\"                      # the sub-table's key, later in the file\n"
		"[servers.managesieve]\n"
		"addr = \":4190\"\n"
		"[servers.managesieve.proxy_protocol]\n"
		"timeout = -1\n");
	const struct sora_server_config *imap = server(c, "imap"), *pop3 = server(c, "pop3");
	const struct sora_server_config *lmtp = server(c, "lmtp");

	assert_int_equal(imap->command_timeout_ms, SORA_DEFAULT_COMMAND_TIMEOUT_MS);
	assert_int_equal(imap->absolute_session_timeout_ms, SORA_DISABLED);
	assert_int_equal(imap->min_bytes_per_minute, SORA_DISABLED);
	assert_int_equal(imap->proxy_protocol.timeout_ms, SORA_DEFAULT_PROXY_PROTOCOL_TIMEOUT_MS);
	assert_int_equal(imap->connect_timeout_ms, SORA_DISABLED);
	assert_int_equal(pop3->command_timeout_ms, 90000);
	assert_int_equal(pop3->absolute_session_timeout_ms, 90 * 60000);
	assert_int_equal(pop3->min_bytes_per_minute, SORA_DEFAULT_MIN_BYTES_PER_MINUTE);
	assert_int_equal(pop3->proxy_protocol.timeout_ms, 3000);
	assert_int_equal(lmtp->command_timeout_ms, SORA_DEFAULT_COMMAND_TIMEOUT_MS);
	assert_int_equal(lmtp->absolute_session_timeout_ms, SORA_DISABLED);
	assert_int_equal(lmtp->min_bytes_per_minute, 4096);
	assert_int_equal(lmtp->proxy_protocol.timeout_ms, 2000);
	assert_int_equal(server(c, "managesieve")->proxy_protocol.timeout_ms, SORA_DISABLED);
	sora_config_free(&c);

	expect_error("[servers.imap]\naddr = \":1\"\ncommand_timeout = -2\n",
		     "test.toml:3: key 'command_timeout' in [servers.imap]: must not be negative "
		     "(-1 disables it)");
	expect_error("[servers.imap]\naddr = \":1\"\ncommand_timeout = \"-5m\"\n",
		     "test.toml:3: key 'command_timeout' in [servers.imap]: negative duration "
		     "(only -1, meaning disabled, is allowed): \"-5m\"");
	expect_error("[servers.imap]\naddr = \":1\"\nmin_bytes_per_minute = -7\n",
		     "test.toml:3: key 'min_bytes_per_minute' in [servers.imap]: must not be "
		     "negative (-1 disables it)");
	expect_error("[servers.imap]\naddr = \":1\"\ncommand_timeout = \"5 minutes\"\n",
		     "test.toml:3: key 'command_timeout' in [servers.imap]: invalid duration unit "
		     "(use ms, s, m, h or d): \"5 minutes\"");
	expect_error("[servers.imap.auth_rate_limit]\nip_window_duration = -1\n",
		     "test.toml:2: key 'ip_window_duration' in [servers.imap.auth_rate_limit]: "
		     "-1 (disabled) is not allowed here");
	expect_error("[servers.imap.auth_rate_limit]\nip_window_duration = \"0s\"\n",
		     "test.toml:2: key 'ip_window_duration' in [servers.imap.auth_rate_limit]: "
		     "must be at least 1ms");
	expect_error("[database]\nquery_timeout = -1\n",
		     "test.toml:2: key 'query_timeout' in [database]: -1 (disabled) is not "
		     "allowed here");
	expect_error("[database]\nquery_timeout = 9223372036854775807\n",
		     "test.toml:2: key 'query_timeout' in [database]: duration out of range");
}

static void test_values(void **state)
{
	struct sora_config *c = load(
		"event_loops = +4\n"
		"worker_threads = 1_000\n"
		"[database]\n"
		"query_timeout = 0                 # the default\n"
		"max_conn_lifetime = \"2h\"\n"
		"sslmode = \"verify-full\"\n"
		"[local_cache]\n"
		"capacity = \"2gb\"\n"
		"max_object_size = 1048576\n"
		"[uploader]\n"
		"retry_interval = 5\n"
		"[servers.imap]\n"
		"addr = \"[::1]:143\"\n"
		"session_memory_limit = 0          # unlimited\n"
		"tls_min_version = \"1.3\"\n"
		"[servers.imap.auth_rate_limit]\n"
		"delay_multiplier = 1.5\n"
		"initial_delay = \"0s\"\n"
		"[servers.pop3]\n"
		"addr = \"unix:/run/sora/pop3.sock\"\n"
		"[servers.pop3.auth_rate_limit]\n"
		"delay_multiplier = 3\n"
		"[logging]\n"
		"level = \"debug\"\n"
		"format = \"json\"\n"
		"output = \"/var/log/sora.log\"\n");
	const struct sora_server_config *s = server(c, "imap");

	assert_int_equal(c->event_loops, 4);
	assert_int_equal(c->worker_threads, 1000);
	assert_int_equal(c->database.query_timeout_ms, 30000);
	assert_int_equal(c->database.max_conn_lifetime_ms, 2 * 3600000);
	assert_string_equal(c->database.sslmode, "verify-full");
	assert_int_equal(c->local_cache.capacity, 2ULL << 30);
	assert_int_equal(c->local_cache.max_object_size, 1048576);
	assert_int_equal(c->uploader.retry_interval_ms, 5000);
	assert_string_equal(s->addr, "[::1]:143");
	assert_int_equal(s->session_memory_limit, 0);
	assert_string_equal(s->tls_min_version, "1.3");
	assert_true(s->auth_rate_limit.delay_multiplier == 1.5);
	assert_int_equal(s->auth_rate_limit.initial_delay_ms, 0);
	assert_true(server(c, "pop3")->auth_rate_limit.delay_multiplier == 3.0);
	assert_string_equal(server(c, "pop3")->addr, "unix:/run/sora/pop3.sock");
	assert_string_equal(c->logging.level, "debug");
	assert_string_equal(c->logging.format, "json");
	assert_string_equal(c->logging.output, "/var/log/sora.log");
	sora_config_free(&c);
}

/* ---- validation -------------------------------------------------------------- */

static void test_wrong_types(void **state)
{
	expect_error("[servers.imap]\naddr = 143\n",
		     "test.toml:2: key 'addr' in [servers.imap]: expected a string, got an integer");
	expect_error("[servers.imap]\naddr = \":1\"\nmax_connections = \"many\"\n",
		     "test.toml:3: key 'max_connections' in [servers.imap]: expected an integer, "
		     "got a string");
	expect_error("[servers.imap]\naddr = \":1\"\ntls = \"yes\"\n",
		     "test.toml:3: key 'tls' in [servers.imap]: expected true or false, got a string");
	expect_error("trusted_networks = \"10.0.0.0/8\"\n",
		     "test.toml:1: key 'trusted_networks' at the top level: expected an array of "
		     "networks such as [\"10.0.0.0/8\"], got a string");
	expect_error("[servers.imap_proxy]\naddr = \":1\"\nremote_addrs = \"a:1\"\n",
		     "test.toml:3: key 'remote_addrs' in [servers.imap_proxy]: expected an array "
		     "of strings, got a string");
	expect_error("[servers.imap.auth_rate_limit]\ndelay_multiplier = \"2\"\n",
		     "test.toml:2: key 'delay_multiplier' in [servers.imap.auth_rate_limit]: "
		     "expected a number, got a string");
	expect_error("[servers.imap]\naddr = \":1\"\ncommand_timeout = true\n",
		     "test.toml:3: key 'command_timeout' in [servers.imap]: expected a duration "
		     "such as \"30s\", \"15m\" or \"720h\", got a boolean");
	expect_error("[servers.imap]\naddr = \":1\"\nappend_limit = 2.5\n",
		     "test.toml:3: key 'append_limit' in [servers.imap]: expected a size such as "
		     "\"25mb\", got a decimal number");
	expect_error("[servers.imap]\naddr = \":1\"\nappend_limit = \"25 parsecs\"\n",
		     "test.toml:3: key 'append_limit' in [servers.imap]: invalid size unit (use b, "
		     "kb, mb, gb or tb): \"25 parsecs\"");
	expect_error("[servers.imap]\naddr = \":1\"\nappend_limit = -1\n",
		     "test.toml:3: key 'append_limit' in [servers.imap]: must not be negative");
	expect_error("[[servers]]\ntype = 5\n",
		     "test.toml:2: key 'type' in [[servers]]: expected a string, got an integer");
	expect_error("event_loops = [\"1\"]\n",
		     "test.toml:1: key 'event_loops' at the top level: expected an integer, got an "
		     "array");
}

static void test_ranges_and_choices(void **state)
{
	expect_error("[database]\nport = 70000\n",
		     "test.toml:2: key 'port' in [database]: must be at most 65535");
	expect_error("worker_threads = 0\n",
		     "test.toml:1: key 'worker_threads' at the top level: must be at least 1");
	expect_error("[servers.imap.auth_rate_limit]\ndelay_multiplier = 0.5\n",
		     "test.toml:2: key 'delay_multiplier' in [servers.imap.auth_rate_limit]: must "
		     "be between 1 and 100");
	expect_error("[servers.imap]\naddr = \":1\"\nmax_connections = -1\n",
		     "test.toml:3: key 'max_connections' in [servers.imap]: must not be negative");
	expect_error("[database]\nmin_conns = 30\n",
		     "test.toml:2: key 'min_conns' in [database]: 30 is more than max_conns (20)");
	expect_error("[logging]\nlevel = \"loud\"\n",
		     "test.toml:2: key 'level' in [logging]: \"loud\" is not one of \"debug\", "
		     "\"info\", \"notice\", \"warn\", \"error\"");
	expect_error("[storage]\nbackend = \"nfs\"\n",
		     "test.toml:2: key 'backend' in [storage]: \"nfs\" is not one of \"fs\", \"s3\"");
	expect_error("[servers.imap]\naddr = \":1\"\ntls_min_version = \"1.1\"\n",
		     "test.toml:3: key 'tls_min_version' in [servers.imap]: \"1.1\" is not one of "
		     "\"1.2\", \"1.3\"");
	expect_error("[shared_mailboxes]\ndefault_rights = \"lrz\"\n",
		     "test.toml:2: key 'default_rights' in [shared_mailboxes]: unknown ACL right "
		     "(the rights are the letters lrswipkxtea)");
}

static void test_addresses(void **state)
{
	struct sora_config *c = load(
		"[servers.a]\ntype = \"imap\"\naddr = \"mail.example.com:143\"\n"
		"[servers.b]\ntype = \"imap\"\naddr = \"127.0.0.1:0\"\n"
		"[servers.c]\ntype = \"imap_proxy\"\naddr = \"0.0.0.0:1143\"\n"
		"remote_addrs = [\"10.0.0.5:143\", \"[2001:db8::5]:143\", \"unix:/run/b.sock\"]\n"
		"[s3]\nendpoint = \"s3.example.com\"\n"
		"[cluster]\npeers = [\"node-2:7946\", \"[2001:db8::2]:7946\"]\n");

	assert_string_equal(c->s3.endpoint, "s3.example.com");
	sora_config_free(&c);
	c = load("[s3]\nendpoint = \"127.0.0.1:9000\"\n");
	sora_config_free(&c);

	expect_error("[servers.imap]\naddr = \"143\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"143\": expected "
		     "host:port, :port, [IPv6]:port or unix:/path");
	expect_error("[servers.imap]\naddr = \"::1:143\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"::1:143\": an "
		     "IPv6 address must be in brackets, as in [::1]:143");
	expect_error("[servers.imap]\naddr = \"[::1]143\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"[::1]143\": "
		     "expected [IPv6 address]:port");
	expect_error("[servers.imap]\naddr = \"[10.0.0.1]:143\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"[10.0.0.1]:143\": "
		     "invalid IPv6 address");
	expect_error("[servers.imap]\naddr = \"unix:run/x.sock\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"unix:run/x.sock\": "
		     "a unix socket path must be absolute (unix:/path)");
	expect_error("[servers.imap]\naddr = \":99999\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \":99999\": invalid "
		     "port (expected a number from 1 to 65535)");
	expect_error("[servers.imap]\naddr = \"host name:1\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"host name:1\": "
		     "invalid character in host name");
	expect_error("[servers.imap_proxy]\naddr = \":1\"\nremote_addrs = [\"b:1\", \":143\"]\n",
		     "test.toml:3: key 'remote_addrs' in [servers.imap_proxy]: element 2: invalid "
		     "address \":143\": missing host name (expected host:port)");
	expect_error("[servers.imap_proxy]\naddr = \":1\"\nremote_addrs = [\"b:0\"]\n",
		     "test.toml:3: key 'remote_addrs' in [servers.imap_proxy]: element 1: invalid "
		     "address \"b:0\": invalid port 0");
	expect_error("[cluster]\npeers = [\"unix:/x\"]\n",
		     "test.toml:2: key 'peers' in [cluster]: element 1: invalid address \"unix:/x\": "
		     "a unix socket is not allowed here (expected host:port)");
	/* [s3] endpoint alone may be a URL (test_s3_endpoint_url). */
	expect_error("[servers.imap]\naddr = \"imap://0.0.0.0:143\"\n",
		     "test.toml:2: key 'addr' in [servers.imap]: invalid address \"imap://0.0.0.0:143\": "
		     "expected host:port, not a URL");
	expect_error("[servers.imap]\naddr = \":143\"\n[servers.pop3]\naddr = \":143\"\n",
		     "test.toml:4: key 'addr' in [servers.pop3]: \":143\" is also used by the "
		     "server on line 1");
}

static void test_cidr_errors(void **state)
{
	expect_error("trusted_networks = [\"10.0.0.0/33\"]\n",
		     "test.toml:1: key 'trusted_networks' at the top level: element 1 "
		     "(\"10.0.0.0/33\"): invalid prefix length (0-32 for IPv4)");
	expect_error("[servers.imap]\naddr = \":1\"\ntrusted_networks = [\"::1\", \"::/129\"]\n",
		     "test.toml:3: key 'trusted_networks' in [servers.imap]: element 2 "
		     "(\"::/129\"): invalid prefix length (0-128 for IPv6)");
	expect_error("[servers.imap.proxy_protocol]\ntrusted_proxies = [\"garbage\"]\n",
		     "test.toml:2: key 'trusted_proxies' in [servers.imap.proxy_protocol]: element 1 "
		     "(\"garbage\"): invalid IP address (expected e.g. \"10.0.0.0/8\" or "
		     "\"2001:db8::/32\")");
	expect_error("[[servers]]\ntype = \"http_api\"\naddr = \":1\"\napi_key = \"k\"\n"
		     "allowed_hosts = [\"example.com\"]\n",
		     "test.toml:5: key 'allowed_hosts' in [[servers]]: element 1 (\"example.com\"): "
		     "invalid IP address (expected e.g. \"10.0.0.0/8\" or \"2001:db8::/32\")");
}

static void test_server_types(void **state)
{
	enum sora_server_type t;

	for (unsigned i = 0; i < SORA_SRV_TYPE_COUNT; i++) {
		assert_int_equal(sora_server_type_parse(sora_server_type_name(i), &t), 0);
		assert_int_equal(t, i);
	}
	assert_null(sora_server_type_name(SORA_SRV_TYPE_COUNT));
	assert_int_equal(sora_server_type_parse("smtp", &t), -1);
	assert_int_equal(sora_server_type_parse("IMAP", &t), -1);
	assert_string_equal(sora_server_type_protocol(SORA_SRV_IMAP_PROXY), "imap");
	assert_string_equal(sora_server_type_protocol(SORA_SRV_LMTP), "lmtp");
	assert_string_equal(sora_server_type_protocol(SORA_SRV_MANAGESIEVE_PROXY), "managesieve");
	assert_string_equal(sora_server_type_protocol(SORA_SRV_METRICS), "metrics");
	assert_null(sora_server_type_protocol(SORA_SRV_TYPE_COUNT));
	assert_true(sora_server_type_is_proxy(SORA_SRV_POP3_PROXY));
	assert_false(sora_server_type_is_proxy(SORA_SRV_POP3));
	assert_false(sora_server_type_is_proxy(SORA_SRV_HTTP_API));

	expect_error("[servers.smtp]\naddr = \":25\"\n",
		     "test.toml:1: [servers.smtp]: 'smtp' is not a server type; add type = \"...\" "
		     "(imap, pop3, lmtp, managesieve, their _proxy variants, http_api, metrics)");
	expect_error("[servers.mx]\ntype = \"smtp\"\n",
		     "test.toml:2: key 'type' in [servers.mx]: unknown server type \"smtp\" (expected "
		     "one of imap pop3 lmtp managesieve imap_proxy pop3_proxy lmtp_proxy "
		     "managesieve_proxy http_api metrics)");
	expect_error("[[servers]]\naddr = \":1\"\n",
		     "test.toml:1: key 'type' in [[servers]]: missing (a [[servers]] entry needs "
		     "type = \"imap\", \"lmtp_proxy\", ...)");
	expect_error("[servers.imap_proxy]\naddr = \":1\"\n",
		     "test.toml:1: key 'remote_addrs' in [servers.imap_proxy]: missing (a "
		     "imap_proxy server needs at least one backend)");
	expect_error("[[servers]]\ntype = \"http_api\"\naddr = \":8080\"\n",
		     "test.toml:1: key 'api_key' in [[servers]]: missing (the HTTP API is never "
		     "served without a key)");
	expect_error("[servers.imap]\nstart = true\n",
		     "test.toml:1: key 'addr' in [servers.imap]: missing (a server with start = "
		     "true needs an address to listen on)");
}

static void test_not_started(void **state)
{
	/* A server that is not started needs no address or backends. */
	struct sora_config *c = load("[servers.imap]\nstart = false\n"
				     "[servers.imap_proxy]\nstart = false\n"
				     "[[servers]]\ntype = \"http_api\"\nstart = false\n");

	assert_int_equal(c->servers_count, 3);
	assert_false(server(c, "imap")->start);
	assert_null(server(c, "imap")->addr);
	/* A key-less [servers.NAME] table still defines its server. */
	sora_config_free(&c);
	expect_error("[servers.pop3]\n[logging]\n",
		     "test.toml:1: key 'addr' in [servers.pop3]: missing (a server with start = "
		     "true needs an address to listen on)");
}

static void test_tls(void **state)
{
	char text[1024];
	struct sora_config *c;

	expect_error("[servers.imap]\naddr = \":993\"\ntls = true\n",
		     "test.toml:3: key 'tls' in [servers.imap]: tls = true needs tls_cert_file "
		     "and tls_key_file");
	snprintf(text, sizeof(text), "[servers.lmtp]\naddr = \":24\"\ntls_use_starttls = true\n"
		 "tls_cert_file = \"%s\"\n", CERT);
	expect_error(text, "test.toml:3: key 'tls_use_starttls' in [servers.lmtp]: "
		     "tls_use_starttls = true needs tls_cert_file and tls_key_file");

	snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
		 "tls_cert_file = \"%s/missing.pem\"\ntls_key_file = \"%s\"\n", tmpdir, KEY);
	{
		char want[512];
		snprintf(want, sizeof(want), "test.toml:4: key 'tls_cert_file' in [servers.imap]: "
			 "file not found: %s/missing.pem", tmpdir);
		expect_error(text, want);
	}
	snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
		 "tls_cert_file = \"%s\"\ntls_key_file = \"%s\"\n", CERT, tmpdir);
	{
		char want[512];
		snprintf(want, sizeof(want), "test.toml:5: key 'tls_key_file' in [servers.imap]: "
			 "not a regular file: %s", tmpdir);
		expect_error(text, want);
	}
	snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
		 "tls_cert_file = \"%s\"\ntls_key_file = \"%s/x/y\"\n", CERT, CERT);
	expect_error_part(text, "key 'tls_key_file' in [servers.imap]: file not found: ");
	snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
		 "tls_cert_file = \"%s\"\ntls_key_file = \"%s\"\ntls_verify = true\n", CERT, KEY);
	expect_error(text, "test.toml:6: key 'tls_verify' in [servers.imap]: tls_verify = true "
		     "needs tls_ca_file (the CAs that sign client certificates)");
	snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
		 "tls_cert_file = \"%s\"\ntls_key_file = \"%s\"\ntls_verify = true\n"
		 "tls_ca_file = \"/nonexistent/ca.pem\"\n", CERT, KEY);
	expect_error(text, "test.toml:7: key 'tls_ca_file' in [servers.imap]: file not found: "
		     "/nonexistent/ca.pem");

	/* All present: loads. */
	snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
		 "tls_cert_file = \"%s\"\ntls_key_file = \"%s\"\ntls_verify = true\n"
		 "tls_ca_file = \"%s\"\n[servers.managesieve]\naddr = \":4190\"\n"
		 "tls_use_starttls = true\ntls_cert_file = \"%s\"\ntls_key_file = \"%s\"\n",
		 CERT, KEY, CA, CERT, KEY);
	c = load(text);
	assert_true(server(c, "imap")->tls_verify);
	assert_string_equal(server(c, "imap")->tls_ca_file, CA);
	assert_true(server(c, "managesieve")->tls_use_starttls);
	sora_config_free(&c);

	/* With TLS off the files are not opened: example configs may name
	 * certificates that exist only on the real host. */
	c = load("[servers.imap]\naddr = \":143\"\ntls = false\n"
		 "tls_cert_file = \"/etc/ssl/sora/none.pem\"\n"
		 "tls_key_file = \"/etc/ssl/sora/none.key\"\n");
	sora_config_free(&c);

	/* An unreadable file (only testable when not root: root reads all). */
	if (geteuid() != 0) {
		char path[160];
		snprintf(path, sizeof(path), "%s/unreadable.pem", tmpdir);
		write_file(path, "x");
		assert_int_equal(chmod(path, 0), 0);
		snprintf(text, sizeof(text), "[servers.imap]\naddr = \":993\"\ntls = true\n"
			 "tls_cert_file = \"%s\"\ntls_key_file = \"%s\"\n", path, KEY);
		expect_error_part(text, "key 'tls_cert_file' in [servers.imap]: file not readable: ");
	}
}

static void test_s3_and_storage(void **state)
{
	struct sora_config *c;

	expect_error("[storage]\nbackend = \"s3\"\n",
		     "test.toml:2: key 'backend' in [storage]: backend = \"s3\" needs bucket and "
		     "endpoint in [s3]");
	expect_error("[storage]\nbackend = \"s3\"\n[s3]\nbucket = \"b\"\n",
		     "test.toml:2: key 'backend' in [storage]: backend = \"s3\" needs bucket and "
		     "endpoint in [s3]");
	expect_error("[s3]\nencrypt = true\n",
		     "test.toml:2: key 'encrypt' in [s3]: encrypt = true needs encryption_key (64 "
		     "hex characters; generate one with `openssl rand -hex 32` and back it up)");
	/* A key is checked whenever it is set, not only when encrypting. */
	expect_error("[s3]\nencryption_key = \"" GOOD_HEX_KEY "0\"\n",
		     "test.toml:2: key 'encryption_key' in [s3]: must be 64 hex characters (a "
		     "32-byte key, e.g. from `openssl rand -hex 32`)");
	expect_error("[s3]\nencryption_key = \"0011223344556677889900aabbccddeeff00112233445566778"
		     "899AABBCCDDEEF\"\n",
		     "test.toml:2: key 'encryption_key' in [s3]: must be 64 hex characters (a "
		     "32-byte key, e.g. from `openssl rand -hex 32`)");
	expect_error("[s3]\nencryption_key = \"g0112233445566778899aabbccddeeff00112233445566778899"
		     "AABBCCDDEEFF\"\n",
		     "test.toml:2: key 'encryption_key' in [s3]: must be 64 hex characters (a "
		     "32-byte key, e.g. from `openssl rand -hex 32`)");
	expect_error("[s3]\nold_encryption_keys = [\"" GOOD_HEX_KEY "\", \"abc\"]\n",
		     "test.toml:2: key 'old_encryption_keys' in [s3]: element 2: must be 64 hex "
		     "characters (a 32-byte key, e.g. from `openssl rand -hex 32`)");

	c = load("[storage]\nbackend = \"s3\"\n[s3]\nendpoint = \"127.0.0.1:9000\"\n"
		 "bucket = \"mail\"\naccess_key = \"S3RVER\"\nsecret_key = \"S3RVER\"\n"
		 "use_ssl = false\npath_style = true\nencrypt = true\n"
		 "encryption_key = \"" GOOD_HEX_KEY "\"\n"
		 "old_encryption_keys = [\"" GOOD_HEX_KEY "\"]\ntimeout = \"2m\"\n");
	assert_string_equal(c->storage.backend, "s3");
	assert_string_equal(c->s3.endpoint, "127.0.0.1:9000");
	assert_string_equal(c->s3.bucket, "mail");
	assert_string_equal(c->s3.secret_key, "S3RVER");
	assert_false(c->s3.use_ssl);
	assert_true(c->s3.path_style);
	assert_int_equal(c->s3.old_encryption_keys_count, 1);
	assert_int_equal(c->s3.timeout_ms, 120000);
	sora_config_free(&c);
}

/* The S3 driver takes an endpoint written as a URL (its scheme decides TLS);
 * the loader used to refuse it although docs/storage.md offered it. */
static void test_s3_endpoint_url(void **state)
{
	static const char *const fine[] = {
		"https://s3.eu-central-1.amazonaws.com", "https://s3.example.com:8443/",
		"http://127.0.0.1:9000", "http://[::1]:9000//",
		"s3.example.com", "s3.example.com:9000",
	};
	char text[256];
	struct sora_config *c;

	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		snprintf(text, sizeof(text), "[s3]\nendpoint = \"%s\"\n", fine[i]);
		c = load(text);
		assert_string_equal(c->s3.endpoint, fine[i]);
		sora_config_free(&c);
	}
	/* What the scheme says wins; an explicit use_ssl that disagrees is an error. */
	c = load("[s3]\nendpoint = \"https://s3.example.com\"\nuse_ssl = true\n");
	sora_config_free(&c);
	expect_error("[s3]\nendpoint = \"https://s3.example.com\"\nuse_ssl = false\n",
		     "test.toml:3: key 'use_ssl' in [s3]: false contradicts endpoint "
		     "\"https://s3.example.com\" (the URL's scheme decides; remove one of them)");
	expect_error("[s3]\nuse_ssl = true\nendpoint = \"http://127.0.0.1:9000\"\n",
		     "test.toml:2: key 'use_ssl' in [s3]: true contradicts endpoint "
		     "\"http://127.0.0.1:9000\" (the URL's scheme decides; remove one of them)");
	expect_error("[s3]\nendpoint = \"https://s3.example.com/bucket\"\n",
		     "test.toml:2: key 'endpoint' in [s3]: invalid address "
		     "\"https://s3.example.com/bucket\": invalid character in host name");
	expect_error_part("[s3]\nendpoint = \"ftp://s3.example.com\"\n", "not a URL");
	expect_error_part("[s3]\nendpoint = \"https://\"\n", "empty host name");
	/* Other host:port keys still refuse URLs. */
	expect_error_part("[[servers]]\ntype = \"imap_proxy\"\naddr = \":1\"\n"
			  "remote_addrs = [\"https://b:143\"]\n", "not a URL");
}

static void test_cluster(void **state)
{
	struct sora_config *c;

	expect_error("[cluster]\nenabled = true\n",
		     "test.toml:2: key 'secret_key' in [cluster]: missing (cluster mode needs a "
		     "shared key: `openssl rand -base64 32`)");
	expect_error("[cluster]\nenabled = true\nsecret_key = \"" SHORT_CLUSTER_KEY "\"\n",
		     "test.toml:3: key 'secret_key' in [cluster]: must be the base64 encoding of 32 "
		     "random bytes (generate one with `openssl rand -base64 32`)");
	expect_error("[cluster]\nenabled = true\nsecret_key = \"" GOOD_CLUSTER_KEY "AAAA\"\n",
		     "test.toml:3: key 'secret_key' in [cluster]: must be the base64 encoding of 32 "
		     "random bytes (generate one with `openssl rand -base64 32`)");
	expect_error("[cluster]\nenabled = true\nsecret_key = \"not base64 at all!\"\n",
		     "test.toml:3: key 'secret_key' in [cluster]: must be the base64 encoding of 32 "
		     "random bytes (generate one with `openssl rand -base64 32`)");
	c = load("hostname = \"n1.example.com\"\n[cluster]\nenabled = true\n"
		 "secret_key = \"" GOOD_CLUSTER_KEY "\"\n");
	assert_true(c->cluster.enabled);
	assert_string_equal(c->cluster.node_id, "n1.example.com");
	sora_config_free(&c);
}

static void test_letsencrypt_checks(void **state)
{
	expect_error("[tls]\nenabled = true\nprovider = \"letsencrypt\"\n",
		     "test.toml:3: key 'email' in [tls.letsencrypt]: missing (provider = "
		     "\"letsencrypt\" needs an account email and at least one domain)");
	expect_error("[tls]\nenabled = true\nprovider = \"letsencrypt\"\n[tls.letsencrypt]\n"
		     "email = \"a@b.c\"\n",
		     "test.toml:4: key 'domains' in [tls.letsencrypt]: missing (provider = "
		     "\"letsencrypt\" needs an account email and at least one domain)");
	expect_error("[tls]\nenabled = true\nprovider = \"letsencrypt\"\n[tls.letsencrypt]\n"
		     "email = \"a@b.c\"\ndomains = [\"x.y\"]\nstorage_provider = \"s3\"\n",
		     "test.toml:7: key 'storage_provider' in [tls.letsencrypt]: storage_provider = "
		     "\"s3\" needs bucket in [tls.letsencrypt.s3]");
	expect_error("[tls]\nprovider = \"acme\"\n",
		     "test.toml:2: key 'provider' in [tls]: \"acme\" is not one of \"file\", "
		     "\"letsencrypt\"");
}

static void test_client_filter_regex(void **state)
{
	static const char head[] = "[[servers]]\ntype = \"imap\"\naddr = \":1\"\n"
		"[[servers.client_filters]]\n";
	char *text;
	struct sora_config *c;

	text = concat(head, "ja4_fingerprint = \"^t13d[0-9]{4}h2_[a-f0-9]{12}_.*$\"\n");
	c = load(text);
	assert_string_equal(c->servers[0].client_filters[0].ja4_fingerprint,
			    "^t13d[0-9]{4}h2_[a-f0-9]{12}_.*$");
	sora_config_free(&c);
	free(text);

	text = concat(head, "ja4_fingerprint = \"([\"\n");
	expect_error_part(text, "test.toml:5: key 'ja4_fingerprint' in [[servers.client_filters]]: "
			  "invalid regular expression: ");
	free(text);
	text = concat(head, "ja4_fingerprint = \"a{2,1}\"\n");
	expect_error_part(text, "invalid regular expression: ");
	free(text);
	/* Nested counts that would make regcomp() expand a huge tree. */
	text = concat(head, "ja4_fingerprint = \"((a{99}){99}){99}\"\n");
	expect_error(text, "test.toml:5: key 'ja4_fingerprint' in [[servers.client_filters]]: "
		     "regular expression too complex (its repetitions expand past 1000 elements)");
	free(text);
	text = concat(head, "ja4_fingerprint = \"a{1000000}\"\n");
	expect_error_part(text, "regular expression too complex");
	free(text);
}

/* Regression: "^t" and 150 stacked '+' made glibc's regcomp() take 24 GB
 * and two minutes at config load ("x+" is built as "xx*", so every '+'
 * doubles the tree). The pattern's cost is now bounded before regcomp()
 * runs; each case here fails in microseconds. */
static void test_client_filter_regex_cost(void **state)
{
	static const char head[] = "[[servers]]\ntype = \"imap\"\naddr = \":1\"\n"
		"[[servers.client_filters]]\n";
	static const struct { const char *re; const char *error; } cases[] = {
		{ "^t++", "repetition operator right after another" },
		{ "a*+", "repetition operator right after another" },
		{ "a+?", "repetition operator right after another" },
		{ "a{2}{3}", "repetition operator right after another" },
		{ "(a+)+*", "repetition operator right after another" },
		/* Each level of "(...)+" doubles: 2^10 copies of "a". */
		{ "((((((((((a+)+)+)+)+)+)+)+)+)+)", "too complex" },
		{ "(a{10}){101}", "too complex" },
		{ "([a-z]+_){500}", "too complex" },
		{ "(((((((((((((((((a)))))))))))))))))", "more than 16 deep" },
		{ "a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p*q*r*s*t*u*v*w*x*y*z*A*B*C*D*E*F*G*", "more than 32" },
		{ "(a)\\\\1", "back-references" },
	};
	/* Patterns of the same shape that stay within the bounds still load. */
	static const char *const fine[] = {
		"^t13d[0-9]{4}h2_[a-f0-9]{12}_[a-f0-9]{12}$",
		"(((((((((a+)+)+)+)+)+)+)+)+)",   /* 2^9 = 512 */
		"(a{10}){100}",
		"[]+]+x",                        /* '+' in a bracket is a character */
		"[[:alpha:]+]+",
		"a\\\\++",                       /* an escaped '+' then one '+' */
		"x{,}",                          /* not an interval: literal braces */
	};
	char *text, line[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(line, sizeof(line), "ja4_fingerprint = \"%s\"\n", cases[i].re);
		text = concat(head, line);
		expect_error_part(text, "test.toml:5: key 'ja4_fingerprint' in "
				  "[[servers.client_filters]]: ");
		expect_error_part(text, cases[i].error);
		free(text);
	}
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		struct sora_config *c;

		snprintf(line, sizeof(line), "ja4_fingerprint = \"%s\"\n", fine[i]);
		text = concat(head, line);
		c = load(text);
		sora_config_free(&c);
		free(text);
	}
	/* The attack itself, at the length a config line allows. */
	snprintf(line, sizeof(line), "ja4_fingerprint = \"^t%0150d\"\n", 0);
	memset(strstr(line, "^t") + 2, '+', 150);
	text = concat(head, line);
	expect_error_part(text, "repetition operator right after another");
	free(text);
}

/* ---- warnings ---------------------------------------------------------------- */

static void test_unknown_keys_and_tables_warn(void **state)
{
	struct sora_config *c;

	clear_log();
	c = load("bogus_top = 1\n"
		 "[servers.imap]\n"
		 "addr = \":143\"\n"
		 "colour = \"blue\"\n"
		 "[servers.imap.wibble]\n"
		 "x = 1\n"
		 "[nonsense]\n"
		 "y = [\"a\",\n"
		 "  \"b\"]\n"
		 "[[servers]]\n"
		 "type = \"pop3\"\n"
		 "addr = \":110\"\n"
		 "speling = true\n"
		 "[logging]\n"
		 "levle = \"debug\"\n");
	assert_logged("test.toml:1: unknown key 'bogus_top' at the top level\n");
	assert_logged("test.toml:4: unknown key 'colour' in [servers.imap]\n");
	assert_logged("test.toml:5: unknown table [servers.imap.wibble] (its keys are ignored)\n");
	assert_logged("test.toml:7: unknown table [nonsense] (its keys are ignored)\n");
	assert_logged("test.toml:13: unknown key 'speling' in [[servers]]\n");
	assert_logged("test.toml:15: unknown key 'levle' in [logging]\n");
	/* Keys inside an unknown table are not warned about one by one. */
	assert_int_equal(warnings, 6);
	assert_int_equal(c->servers_count, 2);
	assert_string_equal(c->logging.level, "info");
	sora_config_free(&c);
	clear_log();
}

/* ---- what the server binaries refuse ------------------------------------------ */

/* Loads text (which must load) and returns its sora_config_check_startable()
 * result: "" when it may start, else the error. */
static const char *startable(const char *text, bool check_only)
{
	static char err[512];
	struct sora_config *c = load(text);

	err[0] = '\0';
	if (sora_config_check_startable(c, check_only, err, sizeof(err)) == 0)
		assert_true(err[0] == '\0');
	else
		assert_true(err[0] != '\0');
	sora_config_free(&c);
	return err;
}

/* Features the loader reads (the guide's blocks must load) but this version
 * does not have: a server refuses to start with them, naming the key. */
static void test_unavailable_features(void **state)
{
	static const struct { const char *text; const char *error; } cases[] = {
		{ "[cluster]\nbind_port = 7946\nenabled = true\nsecret_key = \"" GOOD_CLUSTER_KEY "\"\n",
		  "test.toml:3: key 'enabled' in [cluster]: cluster mode (rate-limit sync "
		  "between nodes) is not available in this version of Sora; set enabled = false" },
		{ "[tls]\nenabled = true\nprovider = \"letsencrypt\"\n[tls.letsencrypt]\n"
		  "email = \"a@b.c\"\ndomains = [\"x.y\"]\n",
		  "test.toml:3: key 'provider' in [tls]: provider = \"letsencrypt\" is not "
		  "available in this version of Sora; set enabled = false and give each TLS "
		  "server tls_cert_file and tls_key_file" },
		{ "[tls]\nenabled = true\n",
		  "test.toml:2: key 'enabled' in [tls]: the [tls] certificate manager is not "
		  "available in this version of Sora; set enabled = false (each server's "
		  "tls_cert_file and tls_key_file serve TLS)" },
		{ "hostname = \"h\"\n[shared_mailboxes]\nenabled = true\n",
		  "test.toml:3: key 'enabled' in [shared_mailboxes]: shared mailboxes are not "
		  "available in this version of Sora; set enabled = false" },
		{ "[[servers]]\ntype = \"imap\"\naddr = \":1\"\n[[servers.client_filters]]\n"
		  "ja4_fingerprint = \"^t13.*\"\n",
		  "test.toml:4: key 'ja4_fingerprint' in [[servers.client_filters]]: client "
		  "filtering by JA4 fingerprint is not available in this version of Sora; "
		  "remove this table" },
		/* The first one is reported. */
		{ "[shared_mailboxes]\nenabled = true\n[tls]\nenabled = true\n",
		  "test.toml:4: key 'enabled' in [tls]: the [tls] certificate manager" },
	};
	/* Switched off, or on a server that is not started: nothing to refuse. */
	static const char *const fine[] = {
		"[cluster]\nenabled = false\nbind_addr = \"10.0.0.1\"\npeers = [\"a:1\"]\n",
		"[tls]\nenabled = false\nprovider = \"letsencrypt\"\n",
		"[shared_mailboxes]\nenabled = false\n",
		"[servers.imap]\naddr = \":1\"\n[servers.imap.auth_rate_limit]\nenabled = false\n",
		/* Built (issue 12): an enabled rate limiter starts. */
		"[servers.imap]\naddr = \":1\"\n[servers.imap.auth_rate_limit]\nenabled = true\n",
		("[servers.imap]\nstart = false\n[servers.imap.auth_rate_limit]\nenabled = true\n"
		 "[[servers.imap.client_filters]]\nja4_fingerprint = \"x\"\n"),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int check_only = 0; check_only < 2; check_only++) {
			const char *err = startable(cases[i].text, check_only);
			if (strncmp(err, cases[i].error, strlen(cases[i].error)) != 0)
				fail_msg("error \"%s\", expected \"%s\"\n--- config:\n%s", err,
					 cases[i].error, cases[i].text);
		}
	}
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		assert_string_equal(startable(fine[i], true), "");
}

/* --check-config fails on warnings (nginx -t does the same); starting does not. */
static void test_check_config_fails_on_warnings(void **state)
{
	static const char typo[] = "[servers.lmtp]\naddr = \":24\"\n"
		"[servers.lmtp.proxy_protocl]\nenabled = true\n";
	static const char two[] = "[servers.lmtp]\naddr = \":24\"\ncolour = 1\n[logging]\nlevle = 1\n";

	clear_log();
	assert_string_equal(startable(typo, false), "");
	assert_string_equal(startable(typo, true),
			    "test.toml: 1 warning above (an unknown key is usually a typo that "
			    "leaves a setting at its default); --check-config fails until it is fixed");
	assert_logged("test.toml:3: unknown table [servers.lmtp.proxy_protocl] (its keys are "
		      "ignored)\n");
	assert_string_equal(startable(two, true),
			    "test.toml: 2 warnings above (an unknown key is usually a typo that "
			    "leaves a setting at its default); --check-config fails until they are "
			    "fixed");
	assert_string_equal(startable("[servers.lmtp]\naddr = \":24\"\n", true), "");
	clear_log();
}

/* ---- loading from a file ------------------------------------------------------- */

static void test_load_file(void **state)
{
	char path[160], err[512];
	struct sora_config *c = NULL;

	snprintf(path, sizeof(path), "%s/sora.toml", tmpdir);
	write_file(path, "[servers.imap]\naddr = \":143\"\n");
	assert_int_equal(sora_config_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(c->path, path);
	{
		char want[200];
		snprintf(want, sizeof(want), "%s:1", path);
		assert_string_equal(server(c, "imap")->defined_at, want);
	}
	sora_config_free(&c);

	write_file(path, "[servers.imap]\naddr = 143\n");
	assert_int_equal(sora_config_load(path, &c, err, sizeof(err)), -1);
	assert_null(c);
	{
		char want[300];
		snprintf(want, sizeof(want), "%s:2: key 'addr' in [servers.imap]: expected a "
			 "string, got an integer", path);
		assert_string_equal(err, want);
	}

	snprintf(path, sizeof(path), "%s/none.toml", tmpdir);
	assert_int_equal(sora_config_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open config file: No such file or directory"));
	assert_int_equal(sora_config_load(tmpdir, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	assert_null(c);

	/* A tiny error buffer gets a cut, terminated message. */
	snprintf(path, sizeof(path), "%s/sora.toml", tmpdir);
	assert_int_equal(sora_config_load(path, &c, err, 8), -1);
	assert_int_equal(strlen(err), 7);
}

/* ---- the example configs ------------------------------------------------------- */

static struct sora_config *load_example(const char *name)
{
	char path[256], err[512];
	struct sora_config *c = NULL;

	snprintf(path, sizeof(path), "deploy/examples/%s", name);
	clear_log();
	if (sora_config_load(path, &c, err, sizeof(err)) < 0)
		fail_msg("%s: %s", name, err);
	/* An example with a typo in a key would only warn: refuse that too. */
	if (warnings != 0)
		fail_msg("%s loads with warnings:\n%s", name, logged);
	/* And one that configures a feature this version lacks would not start. */
	if (sora_config_check_startable(c, true, err, sizeof(err)) < 0)
		fail_msg("%s: %s", name, err);
	return c;
}

static void test_example_backend(void **state)
{
	struct sora_config *c = load_example("backend.toml");
	bool seen[SORA_SRV_TYPE_COUNT] = { false };

	for (size_t i = 0; i < c->servers_count; i++) {
		assert_false(sora_server_type_is_proxy(c->servers[i].type));
		seen[c->servers[i].type] = true;
	}
	/* What sora-backend serves in this version; ManageSieve joins it when
	 * it lands (tests/integration/test_examples.py runs the binary on it). */
	assert_true(seen[SORA_SRV_IMAP] && seen[SORA_SRV_POP3] && seen[SORA_SRV_LMTP] &&
		    seen[SORA_SRV_METRICS]);
	sora_config_free(&c);
}

static void test_example_proxy(void **state)
{
	struct sora_config *c = load_example("proxy.toml");
	size_t proxies = 0;

	for (size_t i = 0; i < c->servers_count; i++) {
		if (sora_server_type_is_proxy(c->servers[i].type)) {
			proxies++;
			assert_true(c->servers[i].remote_addrs_count > 0);
		}
	}
	/* imap_proxy, pop3_proxy, lmtp_proxy, managesieve_proxy */
	assert_int_equal(proxies, 4);
	sora_config_free(&c);
}

static void test_example_all_in_one(void **state)
{
	struct sora_config *c = load_example("all-in-one.toml");
	size_t proxies = 0, backends = 0;

	for (size_t i = 0; i < c->servers_count; i++) {
		if (sora_server_type_is_proxy(c->servers[i].type))
			proxies++;
		else if (c->servers[i].type < SORA_SRV_HTTP_API)
			backends++;
	}
	assert_true(proxies > 0 && backends > 0);
	sora_config_free(&c);
}

/* ---- the reference documentation ---------------------------------------------- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long size;

	if (f == NULL)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size > 0);
	rewind(f);
	text = malloc((size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
	text[size] = '\0';
	fclose(f);
	return text;
}

/* Every key of the schema is documented in its table's section of
 * docs/configuration.md, as a "| `key` |" row. */
static void check_documented(const char *doc, const char *heading,
			     const struct sora_config_table *table)
{
	const char *start = strstr(doc, heading), *end;
	char row[128];

	if (start == NULL) {
		fail_msg("docs/configuration.md has no section \"%s\"", heading);
		return;
	}
	end = strstr(start + 1, "\n## ");
	if (end == NULL)
		end = start + strlen(start);
	for (const struct sora_config_key *k = table->keys; k->name != NULL; k++) {
		const char *hit;

		snprintf(row, sizeof(row), "| `%s` |", k->name);
		hit = strstr(start, row);
		if (hit == NULL || hit > end)
			fail_msg("docs/configuration.md: key %s is not documented under \"%s\"",
				 k->name, heading);
	}
}

static void test_reference_documents_every_key(void **state)
{
	char *doc = read_file("docs/configuration.md");
	char heading[128];

	check_documented(doc, "## Top level", &sora_config_root_table);
	for (size_t i = 0; i < sora_config_fixed_table_count; i++) {
		const struct sora_config_table *t = &sora_config_fixed_tables[i];
		snprintf(heading, sizeof(heading), "## %s%s%s\n", t->is_array ? "[[" : "[",
			 t->name, t->is_array ? "]]" : "]");
		check_documented(doc, heading, t);
	}
	check_documented(doc, "## Servers: [servers.NAME] and [[servers]]",
			 &sora_config_server_table);
	for (size_t i = 0; i < sora_config_server_subtable_count; i++) {
		const struct sora_config_table *t = &sora_config_server_subtables[i];
		snprintf(heading, sizeof(heading), "## %sservers.NAME.%s%s\n",
			 t->is_array ? "[[" : "[", t->name, t->is_array ? "]]" : "]");
		check_documented(doc, heading, t);
	}
	free(doc);
}

/* ---- robustness ------------------------------------------------------------------ */

/* Mutations of a valid config: every result must load or fail cleanly
 * (ASan and the leak checker watch the rest). The fuzz target does this at
 * length; this keeps a deterministic slice of it in every test run. */
static void test_mutations(void **state)
{
	static const char base[] =
		"hostname = \"mx\" # c\n"
		"trusted_networks = [\n \"10.0.0.0/8\", # x\n \"::1\",\n]\n"
		"[servers.imap]\naddr = \":143\"\ncommand_timeout = \"5m\"\n"
		"[servers.imap.auth_rate_limit]\nenabled = true\n"
		"[[servers]]\ntype = \"imap_proxy\"\naddr = \":1143\"\n"
		"remote_addrs = [\"a:1\", \"b:2\"]\n"
		"[[servers.client_filters]]\nja4_fingerprint = \"^t1.*\"\n"
		"[[database.read_endpoints]]\nhost = \"r\"\n"
		"[s3]\nencryption_key = \"" GOOD_HEX_KEY "\"\n";
	static const char alphabet[] = "[]\"\\#;=,.{}\n\r\t -01azZ\x80\xff";
	char text[sizeof(base) + 8];
	uint32_t seed = 12345;

	for (int round = 0; round < 3000; round++) {
		struct sora_config *c = NULL;
		char err[256];
		size_t len = sizeof(base) - 1;
		int edits = 1 + round % 4;

		memcpy(text, base, sizeof(base));
		for (int e = 0; e < edits; e++) {
			seed = seed * 1103515245 + 12345;
			size_t pos = (seed >> 8) % len;
			seed = seed * 1103515245 + 12345;
			char ch = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
			if ((seed >> 20) % 3 == 0 && len > 1) {
				memmove(text + pos, text + pos + 1, len - pos);
				len--;
			} else {
				text[pos] = ch;
			}
		}
		clear_log();
		if (sora_config_load_string(text, len, "m.toml", &c, err, sizeof(err)) == 0)
			sora_config_free(&c);
		else
			assert_true(strncmp(err, "m.toml:", 7) == 0);
	}
	clear_log();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guide_tls),
		cmocka_unit_test(test_guide_auth_rate_limit),
		cmocka_unit_test(test_guide_proxy_protocol),
		cmocka_unit_test(test_guide_s3_encryption),
		cmocka_unit_test(test_guide_search_rate_limit),
		cmocka_unit_test(test_guide_session_memory),
		cmocka_unit_test(test_guide_message_size_limits),
		cmocka_unit_test(test_guide_connection_limits),
		cmocka_unit_test(test_guide_timeouts),
		cmocka_unit_test(test_guide_cluster),
		cmocka_unit_test(test_guide_letsencrypt),
		cmocka_unit_test(test_guide_shared_mailboxes),
		cmocka_unit_test(test_guide_ja4),
		cmocka_unit_test(test_guide_http_api),
		cmocka_unit_test(test_guide_cluster_secret),
		cmocka_unit_test(test_guide_combined),
		cmocka_unit_test(test_guide_blocks_are_current),
		cmocka_unit_test(test_comments_and_strings),
		cmocka_unit_test(test_multiline_arrays),
		cmocka_unit_test(test_multiline_array_errors),
		cmocka_unit_test(test_arrays_of_tables),
		cmocka_unit_test(test_table_errors),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_base_dir),
		cmocka_unit_test(test_server_defaults),
		cmocka_unit_test(test_type_dependent_defaults),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_ranges_and_choices),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_cidr_errors),
		cmocka_unit_test(test_server_types),
		cmocka_unit_test(test_not_started),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_s3_and_storage),
		cmocka_unit_test(test_s3_endpoint_url),
		cmocka_unit_test(test_cluster),
		cmocka_unit_test(test_letsencrypt_checks),
		cmocka_unit_test(test_client_filter_regex),
		cmocka_unit_test(test_client_filter_regex_cost),
		cmocka_unit_test(test_unavailable_features),
		cmocka_unit_test(test_check_config_fails_on_warnings),
		cmocka_unit_test(test_unknown_keys_and_tables_warn),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_example_backend),
		cmocka_unit_test(test_example_proxy),
		cmocka_unit_test(test_example_all_in_one),
		cmocka_unit_test(test_reference_documents_every_key),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup_files, teardown_files);
}

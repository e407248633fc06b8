#include "common/net/serve.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/admin/api.h"
#include "common/core/log.h"
#include "common/metrics/http.h"
#include "common/metrics/metrics.h"
#include "common/net/net.h"

#define MAX_METRICS_SERVERS 8
#define MAX_API_SERVERS 8

static void usage(FILE *out, const char *binary)
{
	fprintf(out,
		"Usage: %s --config FILE [--check-config]\n"
		"       %s --version\n"
		"\n"
		"  -c, --config FILE    configuration file (TOML, see docs/configuration.md)\n"
		"      --check-config   validate the configuration (and certificates) and exit\n"
		"  -V, --version        print the version and exit\n"
		"  -h, --help           this text\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads certificates.\n",
		binary, binary);
}

/* Every connection is a descriptor: use all the system allows this process
 * (systemd's LimitNOFILE or ulimit -Hn) instead of the soft default of 1024. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			sora_warn(NULL, "cannot raise the open files limit: %s", strerror(errno));
	}
}

static bool role_serves(const struct sora_role *role, enum sora_server_type t)
{
	if (t == SORA_SRV_METRICS || t == SORA_SRV_HTTP_API)
		return true;
	return sora_server_type_is_proxy(t) == role->proxy;
}

int sora_serve_main(int argc, char **argv, const struct sora_role *role)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sora_metrics_http *mhttp[MAX_METRICS_SERVERS] = { NULL };
	struct sora_admin_api *apis[MAX_API_SERVERS] = { NULL };
	struct sora_net_params params = { 0 };
	struct sora_config *cfg = NULL;
	struct sora_net *net = NULL;
	const char *config_path = NULL, *error = NULL;
	bool check_only = false;
	size_t nmetrics = 0, napis = 0, nlisteners = 0;
	char err[1024];
	int opt, rc = 2;

	sora_log_set_ident(role->binary);
	while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'k': check_only = true; break;
		case 'V': printf("%s %s\n", role->binary, SORA_VERSION); return 0;
		case 'h': usage(stdout, role->binary); return 0;
		default: usage(stderr, role->binary); return 2;
		}
	}
	if (optind < argc || config_path == NULL) {
		if (optind < argc)
			fprintf(stderr, "%s: unexpected argument '%s'\n", role->binary, argv[optind]);
		else
			fprintf(stderr, "%s: --config FILE is required\n", role->binary);
		usage(stderr, role->binary);
		return 2;
	}
	if (sora_config_load(config_path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", role->binary, err);
		return 2;
	}
	/* Before anything is touched: a configured feature this version
	 * lacks, or (under --check-config) a warning, is a configuration
	 * error. */
	if (sora_config_check_startable(cfg, check_only, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", role->binary, err);
		goto out;
	}
	if (sora_log_setup(cfg->logging.level, cfg->logging.format, cfg->logging.output, &error) < 0) {
		fprintf(stderr, "%s: [logging]: %s\n", role->binary, error);
		goto out;
	}

	params.loops = cfg->event_loops;
	params.workers = cfg->worker_threads;
	if (sora_net_create(cfg, &params, &net, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", role->binary, err);
		goto out;
	}
	for (size_t i = 0; i < cfg->servers_count; i++) {
		const struct sora_server_config *srv = &cfg->servers[i];
		const struct sora_conn_handler *h;

		if (!srv->start)
			continue;
		if (!role_serves(role, srv->type)) {
			sora_info(NULL, "[servers.%s] (%s) is for %s: ignored here", srv->name,
				  sora_server_type_name(srv->type), role->proxy ? "sora-backend" : "sora-proxy");
			continue;
		}
		if (srv->type == SORA_SRV_METRICS) {
			if (nmetrics == MAX_METRICS_SERVERS) {
				fprintf(stderr, "%s: too many metrics servers (max %d)\n", role->binary,
					MAX_METRICS_SERVERS);
				goto out;
			}
			nmetrics++;
			continue;
		}
		if (srv->type == SORA_SRV_HTTP_API) {
			if (napis == MAX_API_SERVERS) {
				fprintf(stderr, "%s: too many http_api servers (max %d)\n", role->binary,
					MAX_API_SERVERS);
				goto out;
			}
			napis++;
			continue;
		}
		h = role->handler(srv->type);
		if (h == NULL) {
			fprintf(stderr, "%s: %s: [servers.%s]: server type '%s' is not available in this "
				"version of %s\n", role->binary, srv->defined_at ? srv->defined_at : config_path,
				srv->name, sora_server_type_name(srv->type), role->binary);
			goto out;
		}
		if (sora_net_add_listener(net, srv, h, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s: %s\n", role->binary, err);
			goto out;
		}
		nlisteners++;
	}
	if (role->start != NULL && role->start(cfg, net, check_only, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", role->binary, err);
		rc = check_only ? 2 : 1;
		goto out;
	}
	if (check_only) {
		printf("%s: configuration %s is valid (%zu server(s) for this role)\n", role->binary,
		       config_path, nlisteners + nmetrics + napis);
		rc = 0;
		goto out;
	}
	if (nlisteners + nmetrics + napis == 0)
		sora_warn(NULL, "no servers of this role in %s: nothing to do but wait for SIGTERM", config_path);

	if (sora_net_bind(net, err, sizeof(err)) < 0) {
		sora_error(NULL, "%s", err);
		rc = 1;
		goto out;
	}
	raise_fd_limit();
	sora_metrics_register_process();
	nmetrics = 0;
	for (size_t i = 0; i < cfg->servers_count; i++) {
		const struct sora_server_config *srv = &cfg->servers[i];
		if (!srv->start || srv->type != SORA_SRV_METRICS)
			continue;
		if (sora_metrics_http_start(srv->addr, srv->path, &srv->allowed_hosts,
					    &mhttp[nmetrics], &error) < 0) {
			sora_error(NULL, "[servers.%s]: cannot start metrics server on %s: %s", srv->name,
				   srv->addr, error);
			rc = 1;
			goto out;
		}
		sora_info(NULL, "metrics on %s%s", srv->addr, srv->path);
		nmetrics++;
	}
	/* The admin API runs on its own threads with its own database pool
	 * (common/admin/api.h): nothing it does reaches the event loops. */
	napis = 0;
	for (size_t i = 0; i < cfg->servers_count; i++) {
		const struct sora_server_config *srv = &cfg->servers[i];
		if (!srv->start || srv->type != SORA_SRV_HTTP_API)
			continue;
		if (sora_admin_api_start(cfg, srv, &apis[napis], &error) < 0) {
			sora_error(NULL, "[servers.%s]: cannot start the HTTP API on %s: %s", srv->name,
				   srv->addr, error);
			rc = 1;
			goto out;
		}
		napis++;
	}
	for (size_t i = 0; i < cfg->servers_count; i++) {
		const struct sora_server_config *srv = &cfg->servers[i];
		if (srv->start && role_serves(role, srv->type) && srv->type != SORA_SRV_METRICS &&
		    srv->type != SORA_SRV_HTTP_API)
			sora_info(NULL, "listening: %s on %s%s%s", sora_server_type_name(srv->type), srv->addr,
				  srv->tls ? " (TLS)" : srv->tls_use_starttls ? " (STARTTLS)" : "",
				  srv->proxy_protocol.enabled ? " (PROXY protocol)" : "");
	}
	sora_info(NULL, "%s %s started", role->binary, SORA_VERSION);
	rc = sora_net_run(net) == 0 ? 0 : 1;
out:
	for (size_t i = 0; i < MAX_API_SERVERS; i++)
		sora_admin_api_stop(&apis[i]);
	for (size_t i = 0; i < MAX_METRICS_SERVERS; i++)
		sora_metrics_http_stop(&mhttp[i]);
	if (role->stop != NULL)
		role->stop();
	sora_net_free(&net);
	sora_config_free(&cfg);
	return rc;
}

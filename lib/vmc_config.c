// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Configuration and policy-file parsing on libconfuse (see vmc_config.h and
 * docs/CONFIGURATION.md). Every message names the file and the line.
 */
#include "vmc_config.h"
#include "vmc_format.h"
#include "vmc_log.h"
#include "vmc_paths.h"
#include "vmc_priv.h"
#include "vmc_pwkek.h"

#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

const char vmc_config_default_text[] =
	"# vmcryptfs embedded default configuration\n"
	"key-provider \"native\" {\n"
	"\ttype = \"native\"\n"
	"\tkey-file = \"" VMC_NATIVE_DEFAULT_KEY "\"\n"
	"}\n"
	"policy \"vm-encryption\" {\n"
	"\tprovider = \"native\"\n"
	"\tdisks = true\n"
	"}\n";

/* libconfuse's lexer has global state: one parse at a time. */
static pthread_mutex_t vmc_confuse_lock = PTHREAD_MUTEX_INITIALIZER;
/* Where the error callback writes; only used under vmc_confuse_lock. */
static char *vmc_confuse_err;
static size_t vmc_confuse_errlen;

__attribute__((format(printf, 2, 0)))
static void confuse_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[512];
	const char *file = cfg && cfg->filename ? cfg->filename : "(config)";

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/*
	 * Keep the last message: libconfuse reports the free-form options of a
	 * key-provider section (CFGF_KEYSTRVAL) as unknown before accepting
	 * them, so an early message may be noise; the parse stops at the cause.
	 */
	if (!vmc_confuse_err)
		return;
	if (cfg && cfg->line > 0)
		snprintf(vmc_confuse_err, vmc_confuse_errlen, "%s:%d: %s", file, cfg->line, msg);
	else
		snprintf(vmc_confuse_err, vmc_confuse_errlen, "%s: %s", file, msg);
}

/*
 * libconfuse 3.3 miscounts lines after comments (each comment line counts as
 * three) and reports an unterminated string at the end of the file. So the
 * text is handed over without comments, every newline kept in place, and
 * unterminated strings and comments are reported here with their own line.
 */
static char *strip_comments(const char *in, const char *name, char *err, size_t errlen)
{
	enum { CODE, DQUOTE, SQUOTE, LINE_COMMENT, BLOCK_COMMENT } st = CODE;
	size_t n = strlen(in), o = 0;
	int line = 1, opened = 0;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = in[i], next = i + 1 < n ? in[i + 1] : '\0';

		switch (st) {
		case CODE:
			if (c == '#' || (c == '/' && next == '/')) {
				st = LINE_COMMENT;
				continue;
			}
			if (c == '/' && next == '*') {
				st = BLOCK_COMMENT;
				opened = line;
				i++;
				continue;
			}
			if (c == '"' || c == '\'') {
				st = c == '"' ? DQUOTE : SQUOTE;
				opened = line;
			}
			break;
		case DQUOTE:
		case SQUOTE:
			if (c == '\\' && next) {
				out[o++] = c;
				c = in[++i];
			} else if (c == (st == DQUOTE ? '"' : '\'')) {
				st = CODE;
			}
			break;
		case LINE_COMMENT:
			if (c != '\n')
				continue;
			st = CODE;
			break;
		case BLOCK_COMMENT:
			if (c == '*' && next == '/') {
				st = CODE;
				i++;
			} else if (c == '\n') {
				out[o++] = c;
				line++;
			}
			continue;
		}
		if (c == '\n')
			line++;
		out[o++] = c;
	}
	out[o] = '\0';
	if (st == DQUOTE || st == SQUOTE || st == BLOCK_COMMENT) {
		snprintf(err, errlen, "%s:%d: unterminated %s", name, opened,
			 st == BLOCK_COMMENT ? "comment" : "string");
		free(out);
		return NULL;
	}
	return out;
}

/* Parse @text into @root, keeping @name for messages. Lock held. */
static int confuse_parse(cfg_t *root, const char *text, const char *name, char *err,
			 size_t errlen)
{
	char *clean = strip_comments(text, name, err, errlen);
	FILE *f;
	int r;

	if (!clean)
		return err[0] ? -EINVAL : -ENOMEM;
	if (!clean[0]) {
		/* fmemopen() refuses an empty buffer; a newline parses the same */
		free(clean);
		clean = strdup("\n");
		if (!clean)
			return -ENOMEM;
	}
	f = fmemopen(clean, strlen(clean), "r");
	if (!f) {
		free(clean);
		return -ENOMEM;
	}
	free(root->filename);
	root->filename = strdup(name);
	r = cfg_parse_fp(root, f) == CFG_SUCCESS ? 0 : -EINVAL;
	fclose(f);
	free(clean);
	if (r && !err[0])
		snprintf(err, errlen, "%s: cannot parse", name);
	return r;
}

static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static int validate_level(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);

	if (vmc_log_level_from_name(v) < 0) {
		cfg_error(cfg, "log-level \"%s\" is not one of error, warning, notice, info, debug",
			  v);
		return -1;
	}
	return 0;
}

static int validate_class(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);
	int c = vmc_class_from_name(v);

	if (c < 0 || c == VMC_CLASS_VMDK) {
		cfg_error(cfg, "class \"%s\" is not one of cleartext, disk, home, coredump, other",
			  v);
		return -1;
	}
	return 0;
}

static void param_add(struct vmc_provider_conf *p, const char *name, const char *value,
		      int *r)
{
	struct vmc_kp_param *n;

	if (*r)
		return;
	n = realloc(p->params, (p->nparams + 1) * sizeof(*n));
	if (!n) {
		*r = -ENOMEM;
		return;
	}
	p->params = n;
	n[p->nparams].name = strdup(name);
	n[p->nparams].value = strdup(value);
	if (!n[p->nparams].name || !n[p->nparams].value) {
		free((char *)n[p->nparams].name);
		free((char *)n[p->nparams].value);
		*r = -ENOMEM;
		return;
	}
	p->nparams++;
}

static char *dup_opt(cfg_t *sec, const char *name)
{
	const char *v = cfg_size(sec, name) ? cfg_getstr(sec, name) : NULL;

	return v ? strdup(v) : NULL;
}

/* The control and audit sections. */
static int control_build(cfg_t *root, struct vmc_config *c, char *err, size_t errlen)
{
	cfg_t *ctl = cfg_getsec(root, "control"), *aud = cfg_getsec(root, "audit");

	if (ctl) {
		c->ctl_socket = dup_opt(ctl, "socket");
		c->ctl_group = dup_opt(ctl, "socket-group");
		if (c->ctl_socket && c->ctl_socket[0] != '/') {
			snprintf(err, errlen, "%s:%d: control: socket \"%s\" must be an absolute path",
				 c->source, ctl->line, c->ctl_socket);
			return -EINVAL;
		}
	}
	c->audit_log = strdup(aud ? cfg_getstr(aud, "log") : VMC_AUDIT_LOG_DEFAULT);
	if (!c->audit_log)
		return -ENOMEM;
	if (c->audit_log[0] && c->audit_log[0] != '/') {
		snprintf(err, errlen, "%s:%d: audit: log \"%s\" must be an absolute path (or \"\" "
			 "for none)", c->source, aud ? aud->line : 0, c->audit_log);
		return -EINVAL;
	}
	c->audit_syslog = aud ? cfg_getbool(aud, "syslog") : true;
	if (aud && cfg_size(aud, "remote") > VMC_AUDIT_REMOTE_MAX) {
		snprintf(err, errlen, "%s:%d: audit: at most %d remote syslog targets", c->source,
			 aud->line, VMC_AUDIT_REMOTE_MAX);
		return -EINVAL;
	}
	for (unsigned int i = 0; aud && i < cfg_size(aud, "remote"); i++) {
		const char *u = cfg_getnstr(aud, "remote", i);

		if (strncmp(u, "udp://", 6) && strncmp(u, "tcp://", 6)) {
			snprintf(err, errlen, "%s:%d: audit: remote \"%s\" is not udp://HOST:PORT or "
				 "tcp://HOST:PORT", c->source, aud->line, u);
			return -EINVAL;
		}
		c->audit_remote[c->naudit_remote] = strdup(u);
		if (!c->audit_remote[c->naudit_remote++])
			return -ENOMEM;
	}
	return 0;
}

bool vmc_config_role(const struct vmc_config *cfg, const char *name, uint32_t *privs)
{
	if (!strcmp(name, "Administrator")) {
		*privs = VMC_ROLE_ADMINISTRATOR;
		return true;
	}
	if (!strcmp(name, "NoCryptoAdmin")) {
		*privs = VMC_ROLE_NO_CRYPTO_ADMIN;
		return true;
	}
	for (size_t i = 0; i < cfg->nroles; i++)
		if (!strcmp(cfg->roles[i].name, name)) {
			*privs = cfg->roles[i].privs;
			return true;
		}
	return false;
}

/* Custom roles and grants. */
static int roles_build(cfg_t *root, struct vmc_config *c, char *err, size_t errlen)
{
	unsigned int n = cfg_size(root, "role");

	c->roles = calloc(n ? n : 1, sizeof(*c->roles));
	if (!c->roles)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(root, "role", i);
		struct vmc_role_conf *role = &c->roles[c->nroles++];

		role->name = strdup(cfg_title(sec));
		if (!role->name)
			return -ENOMEM;
		if (!strcmp(role->name, "Administrator") || !strcmp(role->name, "NoCryptoAdmin") ||
		    !name_ok(role->name, VMC_NAME_MAX)) {
			snprintf(err, errlen, "%s:%d: role \"%s\": %s", c->source, sec->line,
				 role->name, name_ok(role->name, VMC_NAME_MAX) ?
				 "the predefined roles cannot be redefined" :
				 "a name is 1-63 letters, digits, '.', '_' or '-'");
			return -EINVAL;
		}
		for (unsigned int j = 0; j < cfg_size(sec, "privileges"); j++) {
			const char *pn = cfg_getnstr(sec, "privileges", j);
			uint32_t bit = vmc_priv_from_name(pn);

			if (!bit) {
				snprintf(err, errlen, "%s:%d: role \"%s\": unknown privilege \"%s\"",
					 c->source, sec->line, role->name, pn);
				return -EINVAL;
			}
			role->privs |= bit;
		}
	}
	n = cfg_size(root, "grant");
	c->grants = calloc(n ? n : 1, sizeof(*c->grants));
	if (!c->grants)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(root, "grant", i);
		struct vmc_grant_conf *g = &c->grants[c->ngrants++];
		bool user = cfg_size(sec, "user"), group = cfg_size(sec, "group");
		char *end;

		if (user == group) {
			snprintf(err, errlen, "%s:%d: grant: give exactly one of \"user\" and "
				 "\"group\"", c->source, sec->line);
			return -EINVAL;
		}
		g->is_group = group;
		g->who = strdup(cfg_getstr(sec, group ? "group" : "user"));
		if (!g->who)
			return -ENOMEM;
		g->id = (unsigned int)strtoul(g->who, &end, 10);
		g->id_set = g->who[0] && !*end;
		if (!cfg_size(sec, "roles")) {
			snprintf(err, errlen, "%s:%d: grant to %s: \"roles\" is required", c->source,
				 sec->line, g->who);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < cfg_size(sec, "roles"); j++) {
			const char *rn = cfg_getnstr(sec, "roles", j);
			uint32_t privs;

			if (!vmc_config_role(c, rn, &privs)) {
				snprintf(err, errlen, "%s:%d: grant to %s: unknown role \"%s\"",
					 c->source, sec->line, g->who, rn);
				return -EINVAL;
			}
			g->privs |= privs;
		}
	}
	return 0;
}

/* Move a parsed libconfuse tree into struct vmc_config. */
static int config_build(cfg_t *root, struct vmc_config *c, char *err, size_t errlen)
{
	unsigned int n;
	int r = 0;

	if (cfg_size(root, "log-level"))
		c->log_level = vmc_log_level_from_name(cfg_getstr(root, "log-level"));

	n = cfg_size(root, "key-provider");
	c->providers = calloc(n ? n : 1, sizeof(*c->providers));
	if (!c->providers)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(root, "key-provider", i);
		struct vmc_provider_conf *p = &c->providers[c->nproviders++];
		const char *type = cfg_getstr(sec, "type");

		p->name = strdup(cfg_title(sec));
		p->type = type ? strdup(type) : NULL;
		if (!p->name || (type && !p->type))
			return -ENOMEM;
		if (!name_ok(p->name, VMC_FMT_PROVIDER_MAX)) {
			snprintf(err, errlen, "%s:%d: key-provider \"%s\": a name is 1-63 letters, "
				 "digits, '.', '_' or '-'", c->source, sec->line, p->name);
			return -EINVAL;
		}
		if (!strcmp(p->name, VMC_PWKEK_PROVIDER)) {
			snprintf(err, errlen, "%s:%d: key-provider \"%s\": the name is reserved for "
				 "files sealed under a password (vmcryptfs-util coredump export); "
				 "choose another name", c->source, sec->line, p->name);
			return -EINVAL;
		}
		if (!type || !name_ok(type, 33)) {
			snprintf(err, errlen, "%s:%d: key-provider \"%s\": \"type\" must name a "
				 "provider type, such as \"native\" or \"kmip\"", c->source, sec->line,
				 p->name);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < cfg_size(sec, "server"); j++)
			param_add(p, "server", cfg_getnstr(sec, "server", j), &r);
		/* Free-form "name = value" options go to the plugin. */
		for (unsigned int j = 0; j < cfg_num(sec); j++) {
			cfg_opt_t *o = &sec->opts[j];

			if (!strcmp(o->name, "type") || !strcmp(o->name, "server") ||
			    o->type != CFGT_STR || !cfg_opt_size(o))
				continue;
			param_add(p, o->name, cfg_opt_getnstr(o, 0), &r);
		}
		if (r)
			return r;
	}

	n = cfg_size(root, "policy");
	c->policies = calloc(n ? n : 1, sizeof(*c->policies));
	if (!c->policies)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(root, "policy", i);
		struct vmc_policy_conf *p = &c->policies[c->npolicies++];
		const char *prov = cfg_getstr(sec, "provider");

		p->name = strdup(cfg_title(sec));
		p->provider = prov ? strdup(prov) : NULL;
		p->disks = cfg_getbool(sec, "disks");
		if (!p->name || (prov && !p->provider))
			return -ENOMEM;
		if (!name_ok(p->name, VMC_NAME_MAX)) {
			snprintf(err, errlen, "%s:%d: policy \"%s\": a name is 1-63 letters, digits, "
				 "'.', '_' or '-'", c->source, sec->line, p->name);
			return -EINVAL;
		}
		if (!prov || !vmc_config_provider(c, prov)) {
			snprintf(err, errlen, "%s:%d: policy \"%s\": provider \"%s\" is not defined "
				 "by any key-provider section", c->source, sec->line, p->name,
				 prov ? prov : "");
			return -EINVAL;
		}
	}

	n = cfg_size(root, "file-class");
	c->rules = calloc(n ? n : 1, sizeof(*c->rules));
	if (!c->rules)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(root, "file-class", i);
		struct vmc_class_rule *rule = &c->rules[c->nrules++];
		const char *cls = cfg_getstr(sec, "class");

		rule->pattern = strdup(cfg_title(sec));
		if (!rule->pattern)
			return -ENOMEM;
		if (!cls) {
			snprintf(err, errlen, "%s:%d: file-class \"%s\": \"class\" is required",
				 c->source, sec->line, rule->pattern);
			return -EINVAL;
		}
		rule->cls = (enum vmc_class)vmc_class_from_name(cls);
		if (!strcmp(rule->pattern, VMC_FMT_POLICY_NAME) ||
		    !strncmp(rule->pattern, VMC_FMT_RESERVED_PREFIX, strlen(VMC_FMT_RESERVED_PREFIX))) {
			snprintf(err, errlen, "%s:%d: file-class \"%s\": the policy file and "
				 "vmcryptfs' own files cannot be reclassified", c->source, sec->line,
				 rule->pattern);
			return -EINVAL;
		}
	}
	r = control_build(root, c, err, errlen);
	if (!r)
		r = roles_build(root, c, err, errlen);
	return r;
}

int vmc_config_parse(const char *text, const char *name, struct vmc_config **out, char *err,
		     size_t errlen)
{
	cfg_opt_t provider_opts[] = {
		CFG_STR("type", NULL, CFGF_NODEFAULT),
		CFG_STR_LIST("server", NULL, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_opt_t policy_opts[] = {
		CFG_STR("provider", NULL, CFGF_NODEFAULT),
		CFG_BOOL("disks", cfg_true, CFGF_NONE),
		CFG_END(),
	};
	cfg_opt_t class_opts[] = {
		CFG_STR("class", NULL, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_opt_t control_opts[] = {
		CFG_STR("socket", NULL, CFGF_NODEFAULT),
		CFG_STR("socket-group", NULL, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_opt_t audit_opts[] = {
		CFG_STR("log", VMC_AUDIT_LOG_DEFAULT, CFGF_NONE),
		CFG_BOOL("syslog", cfg_true, CFGF_NONE),
		CFG_STR_LIST("remote", NULL, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_opt_t role_opts[] = {
		CFG_STR_LIST("privileges", NULL, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_opt_t grant_opts[] = {
		CFG_STR("user", NULL, CFGF_NODEFAULT),
		CFG_STR("group", NULL, CFGF_NODEFAULT),
		CFG_STR_LIST("roles", NULL, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_opt_t opts[] = {
		CFG_STR("log-level", NULL, CFGF_NODEFAULT),
		CFG_SEC("control", control_opts, CFGF_NONE),
		CFG_SEC("audit", audit_opts, CFGF_NONE),
		CFG_SEC("role", role_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
		CFG_SEC("grant", grant_opts, CFGF_MULTI),
		CFG_SEC("key-provider", provider_opts,
			CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES | CFGF_KEYSTRVAL),
		CFG_SEC("policy", policy_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
		CFG_SEC("file-class", class_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
		CFG_END(),
	};
	struct vmc_config *c;
	cfg_t *root;
	int r = 0;

	err[0] = '\0';
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->log_level = -1;
	c->source = strdup(name);
	if (!c->source) {
		free(c);
		return -ENOMEM;
	}

	pthread_mutex_lock(&vmc_confuse_lock);
	vmc_confuse_err = err;
	vmc_confuse_errlen = errlen;
	root = cfg_init(opts, CFGF_NONE);
	if (!root) {
		r = -ENOMEM;
		goto unlock;
	}
	cfg_set_error_function(root, confuse_errfunc);
	cfg_set_validate_func(root, "log-level", validate_level);
	cfg_set_validate_func(root, "file-class|class", validate_class);
	r = confuse_parse(root, text, name, err, errlen);
	if (!r)
		r = config_build(root, c, err, errlen);
	cfg_free(root);
unlock:
	vmc_confuse_err = NULL;
	pthread_mutex_unlock(&vmc_confuse_lock);

	if (r) {
		vmc_config_free(c);
		return r;
	}
	err[0] = '\0'; /* libconfuse may have complained about free-form options */
	*out = c;
	return 0;
}

/* Read a whole small text file; refuses more than @max bytes. */
static int read_text(const char *path, size_t max, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f) {
		int e = errno;

		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f) || n > max) {
		snprintf(err, errlen, "%s: %s", path,
			 n > max ? "file too large" : "read error");
		fclose(f);
		free(buf);
		return n > max ? -EFBIG : -EIO;
	}
	fclose(f);
	buf[n] = '\0';
	if (memchr(buf, '\0', n)) {
		snprintf(err, errlen, "%s: contains a NUL byte; not a text file", path);
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	return 0;
}

int vmc_config_load(const char *path, struct vmc_config **out, char *err, size_t errlen)
{
	char *text = NULL;
	int r;

	if (!path) {
		if (access(VMC_DEFAULT_CONFIG, F_OK) == 0)
			path = VMC_DEFAULT_CONFIG;
		else
			return vmc_config_parse(vmc_config_default_text, "(embedded default)", out,
						err, errlen);
	}
	r = read_text(path, 1 << 20, &text, err, errlen);
	if (r)
		return r;
	r = vmc_config_parse(text, path, out, err, errlen);
	free(text);
	return r;
}

void vmc_config_free(struct vmc_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nproviders; i++) {
		struct vmc_provider_conf *p = &c->providers[i];

		for (size_t j = 0; j < p->nparams; j++) {
			free((char *)p->params[j].name);
			free((char *)p->params[j].value);
		}
		free(p->params);
		free(p->name);
		free(p->type);
	}
	for (size_t i = 0; i < c->npolicies; i++) {
		free(c->policies[i].name);
		free(c->policies[i].provider);
	}
	for (size_t i = 0; i < c->nrules; i++)
		free(c->rules[i].pattern);
	for (size_t i = 0; i < c->nroles; i++)
		free(c->roles[i].name);
	for (size_t i = 0; i < c->ngrants; i++)
		free(c->grants[i].who);
	for (size_t i = 0; i < c->naudit_remote; i++)
		free(c->audit_remote[i]);
	free(c->roles);
	free(c->grants);
	free(c->ctl_socket);
	free(c->ctl_group);
	free(c->audit_log);
	free(c->providers);
	free(c->policies);
	free(c->rules);
	free(c->source);
	free(c);
}

const struct vmc_provider_conf *vmc_config_provider(const struct vmc_config *cfg,
						    const char *name)
{
	for (size_t i = 0; i < cfg->nproviders; i++)
		if (!strcmp(cfg->providers[i].name, name))
			return &cfg->providers[i];
	return NULL;
}

const struct vmc_policy_conf *vmc_config_policy(const struct vmc_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->npolicies; i++)
		if (!strcmp(cfg->policies[i].name, name))
			return &cfg->policies[i];
	return NULL;
}

/* --- vmcrypt.policy ------------------------------------------------------- */

/* Line of the "policy" assignment, for messages (1 if not found). */
static int policy_line(const char *text)
{
	int line = 1;

	for (const char *p = text; *p; p++) {
		if (*p == '\n') {
			line++;
		} else if ((p == text || p[-1] == '\n') && !strncmp(p, "policy", 6)) {
			const char *q = p + 6;

			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == '=')
				return line;
		}
	}
	return 1;
}

int vmc_policy_parse(const char *text, const char *path, const struct vmc_config *cfg,
		     struct vmc_vm_policy *out, char *err, size_t errlen)
{
	cfg_opt_t opts[] = {
		CFG_STR("policy", NULL, CFGF_NODEFAULT),
		CFG_BOOL("disks", cfg_true, CFGF_NODEFAULT),
		CFG_END(),
	};
	cfg_t *root;
	int r = 0;

	err[0] = '\0';
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&vmc_confuse_lock);
	vmc_confuse_err = err;
	vmc_confuse_errlen = errlen;
	root = cfg_init(opts, CFGF_NONE);
	if (!root) {
		r = -ENOMEM;
		goto unlock;
	}
	cfg_set_error_function(root, confuse_errfunc);
	r = confuse_parse(root, text, path, err, errlen);
	if (r) {
		/* the message is set */
	} else if (!cfg_size(root, "policy")) {
		snprintf(err, errlen, "%s: no \"policy\" set (expected policy = \"NAME\")", path);
		r = -EINVAL;
	} else {
		const char *name = cfg_getstr(root, "policy");

		if (strlen(name) >= sizeof(out->policy) || !vmc_config_policy(cfg, name)) {
			snprintf(err, errlen, "%s:%d: policy \"%s\" is not defined in %s", path,
				 policy_line(text), name, cfg->source);
			r = -EINVAL;
		} else {
			strcpy(out->policy, name);
			out->disks_set = cfg_size(root, "disks") > 0;
			out->disks = out->disks_set ? cfg_getbool(root, "disks") : true;
		}
	}
	cfg_free(root);
unlock:
	vmc_confuse_err = NULL;
	pthread_mutex_unlock(&vmc_confuse_lock);
	return r;
}

bool vmc_policy_encrypts_disks(const struct vmc_config *cfg, const struct vmc_vm_policy *pol)
{
	const struct vmc_policy_conf *p = vmc_config_policy(cfg, pol->policy);

	return p && p->disks && (!pol->disks_set || pol->disks);
}

bool vmc_policy_encrypts(const struct vmc_config *cfg, const struct vmc_vm_policy *pol,
			 enum vmc_class c)
{
	switch (c) {
	case VMC_CLASS_CLEARTEXT:
		return false;
	case VMC_CLASS_DISK:
	case VMC_CLASS_VMDK: /* unresolved: treat as the disk it may be */
		return vmc_policy_encrypts_disks(cfg, pol);
	default:
		return true; /* home, core dump, other */
	}
}

#define POLICY_MAX (64 * 1024)

int vmc_policy_read_at(int dirfd, const char *dir, const struct vmc_config *cfg,
		       struct vmc_vm_policy *pol, char *err, size_t errlen)
{
	char where[PATH_MAX], *text;
	struct stat st;
	ssize_t n;
	int fd, r;

	if (!strcmp(dir, "."))
		snprintf(where, sizeof(where), "%s", VMC_FMT_POLICY_NAME);
	else
		snprintf(where, sizeof(where), "%s/%s", dir, VMC_FMT_POLICY_NAME);
	fd = openat(dirfd, VMC_FMT_POLICY_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
		    O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		if (r != -ENOENT)
			snprintf(err, errlen, "%s: cannot open: %s", where,
				 errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return r;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", where);
		close(fd);
		return -EINVAL;
	}
	if (st.st_size > POLICY_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", where, POLICY_MAX);
		close(fd);
		return -EFBIG;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	n = pread(fd, text, (size_t)st.st_size, 0);
	r = n < 0 ? -errno : 0;
	close(fd);
	if (r) {
		snprintf(err, errlen, "%s: cannot read: %s", where, strerror(-r));
		free(text);
		return r;
	}
	text[n] = '\0';
	if (memchr(text, '\0', (size_t)n)) {
		snprintf(err, errlen, "%s: contains a NUL byte", where);
		free(text);
		return -EINVAL;
	}
	r = vmc_policy_parse(text, where, cfg, pol, err, errlen);
	free(text);
	return r;
}

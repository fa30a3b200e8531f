// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: the control-socket request parser (lib/vmc_ctlproto.c), fed
 * by any local user who can connect, the argument check and the typed
 * argument accessors the verbs use on what it returns, and the name encoding
 * of what the daemon writes back (its output must be UTF-8 and decode back).
 */
#include "vmc_ctlproto.h"
#include "vmc_utf8.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const allowed[] = { "vm", "vms", "name", "deep", NULL };
	struct vmc_ctl_req req;
	const char *s = NULL;
	long long n = 0;
	bool b = false;
	char err[256], *name = strndup((const char *)data, size), *enc;
	size_t len;

	/* Any bytes as a name: encoded, they are UTF-8 and decode back. */
	enc = name ? vmc_name_encode(name) : NULL;
	if (enc) {
		if (!vmc_utf8_valid(enc, strlen(enc)) || vmc_name_decode(enc, &len) ||
		    strcmp(enc, name))
			abort();
	}
	free(enc);
	free(name);
	if (vmc_ctl_parse_request((const char *)data, size, &req, err, sizeof(err))) {
		if (!vmc_utf8_valid(err, strlen(err)))
			abort(); /* an error message never quotes raw bytes */
		return 0;
	}
	vmc_ctl_check_args(req.args, "fuzz", allowed, err, sizeof(err));
	vmc_ctl_arg_str(req.args, "vm", false, &s, err, sizeof(err));
	vmc_ctl_arg_str(req.args, "name", true, &s, err, sizeof(err));
	vmc_ctl_arg_bool(req.args, "deep", &b, err, sizeof(err));
	vmc_ctl_arg_int(req.args, "limit", &n, err, sizeof(err));
	vmc_ctl_req_free(&req);
	return 0;
}

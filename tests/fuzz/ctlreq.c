// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: the control-socket request parser (lib/vmc_ctlproto.c), fed
 * by any local user who can connect, and the typed argument accessors the
 * verbs use on what it returns.
 */
#include "vmc_ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmc_ctl_req req;
	const char *s = NULL;
	long long n = 0;
	bool b = false;
	char err[256];

	if (vmc_ctl_parse_request((const char *)data, size, &req, err, sizeof(err)))
		return 0;
	vmc_ctl_arg_str(req.args, "vm", false, &s, err, sizeof(err));
	vmc_ctl_arg_str(req.args, "name", true, &s, err, sizeof(err));
	vmc_ctl_arg_bool(req.args, "deep", &b, err, sizeof(err));
	vmc_ctl_arg_int(req.args, "limit", &n, err, sizeof(err));
	vmc_ctl_req_free(&req);
	return 0;
}

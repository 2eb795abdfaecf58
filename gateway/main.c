/* nhgw: loads the configuration and hands over to the master. No protocol logic here. */
#include <stdio.h>

#include "config.h"
#include "log.h"
#include "master.h"

int main(int argc, char **argv)
{
    struct cfg cfg;
    char err[512];
    int rc = cfg_load(&cfg, argc, argv, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "nhgw: %s\n", err);
        return 2;
    }
    if (rc > 0)
        return 0;
    log_init(cfg.log_level, cfg.log_format == CFG_LOG_JSON, "master", -1);
    rc = master_run(&cfg);
    cfg_free(&cfg);
    return rc;
}

// The `convgen tune` and `convgen db` subcommands (schedules/tuner.h does the work).
#pragma once

#include <string>
#include <vector>

namespace convgen {

struct TuneCommand {
    std::string suite, db, target, budget = "10m", per_layer, shard = "0/1";
    int threads = 1;
    bool no_autoschedulers = false;
};
// Returns the exit status (0, or 130 when interrupted); throws convgen::Error on bad input.
int cmd_tune(const TuneCommand &c);

struct DbCommand {
    std::string action;               // show | merge | prune
    std::string db;                   // the database shown, merged into, or pruned
    std::vector<std::string> inputs;  // merge: the databases merged into `db`
    bool keep_other_cpus = false;     // prune: keep records of other CPU models
};
int cmd_db(const DbCommand &c);

}  // namespace convgen

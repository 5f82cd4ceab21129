// The settings `memcensus run` hands to the runtime in the traced program's environment:
// set by core/launch/preload_launcher.cc, read by runtime/runtime.cc, and taken out of (and
// put back into) the program's environment by runtime/hooks_exec.cc. One list, so that the
// three cannot drift apart. Freestanding, for the runtime.
#pragma once

namespace memcensus::format {

inline constexpr const char* kEnvOutput = "MEMCENSUS_OUTPUT";           // trace path
inline constexpr const char* kEnvRootPid = "MEMCENSUS_ROOT_PID";        // pid of `memcensus run`
inline constexpr const char* kEnvFollowFork = "MEMCENSUS_FOLLOW_FORK";  // "1" or "0"
inline constexpr const char* kEnvNoStacks = "MEMCENSUS_NO_STACKS";      // "1" or "0"
inline constexpr const char* kEnvStackDepth = "MEMCENSUS_STACK_DEPTH";  // frames per stack
inline constexpr const char* kEnvSample = "MEMCENSUS_SAMPLE";           // bytes; 0: all
inline constexpr const char* kEnvCheck = "MEMCENSUS_CHECK";             // "1" or "0"
inline constexpr const char* kEnvGuardRate = "MEMCENSUS_GUARD_RATE";    // one in N guarded
inline constexpr const char* kEnvFreeStacks = "MEMCENSUS_FREE_STACKS";  // "1" or "0"

// Every one of them (the user's own MEMCENSUS_* variables are not the launcher's).
inline constexpr const char* kLauncherSettings[] = {kEnvOutput,   kEnvRootPid,    kEnvFollowFork,
                                                    kEnvNoStacks, kEnvStackDepth, kEnvSample,
                                                    kEnvCheck,    kEnvGuardRate,  kEnvFreeStacks};

}  // namespace memcensus::format

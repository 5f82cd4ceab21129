# Installs web/node_modules exactly as package-lock.json says, when it is missing or older
# than the lock file; otherwise does nothing. Then touches STAMP.
# Usage: cmake -DWEB_DIR=... -DNPM=... -DSTAMP=... -P npm_ci.cmake
set(installed ${WEB_DIR}/node_modules/.package-lock.json)
if(NOT EXISTS ${installed} OR ${WEB_DIR}/package-lock.json IS_NEWER_THAN ${installed})
  message(STATUS "web: npm ci in ${WEB_DIR}")
  execute_process(
    COMMAND ${NPM} ci --prefix ${WEB_DIR} --no-audit --no-fund
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "web: npm ci failed (${rc}); run scripts/setup.sh")
  endif()
endif()
file(TOUCH ${STAMP})

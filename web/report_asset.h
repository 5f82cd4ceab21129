// The HTML report template: one self-contained page (all script and style inline, no network).
// It holds the placeholder __MEMCENSUS_DATA__ exactly once, as the whole content of
// <script id="memcensus-data" type="application/json">. `memcensus html` writes the page with the
// placeholder replaced by the report model JSON in which every "</" is written "<\/".
// Generated at build time from web/src by web/build.mjs and web/embed.mjs.
#pragma once

namespace memcensus {

// The page bytes, followed by a terminating NUL that is not counted in the size.
extern const char kReportTemplate[];
// Number of bytes of the page, without the terminating NUL.
extern const unsigned long kReportTemplateSize;

}  // namespace memcensus

// export.hpp: COS_API marks the declarations libcos exports (symbols are hidden
// by default).
#pragma once

#define COS_API __attribute__((visibility("default")))

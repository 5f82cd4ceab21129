// C++ containers: maps, vectors, strings built and torn down repeatedly.
// usage: containers ROUNDS
#include <cstdlib>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

int main(int argc, char** argv) {
  long rounds = argc > 1 ? std::atol(argv[1]) : 200;
  size_t total = 0;
  for (long r = 0; r < rounds; ++r) {
    std::map<int, std::string> m;
    std::unordered_map<std::string, std::vector<int>> u;
    for (int i = 0; i < 2000; ++i) {
      m[i] = std::string(20 + i % 40, 'a');
      auto& v = u[std::to_string(i % 500)];
      v.push_back(i);
    }
    total += m.size() + u.size();
  }
  return total == 0;
}
